"""The app's views, one Streamlit script each; run by ``st.navigation`` in ``app/main.py``, never imported."""
