"""The Streamlit app: search and compare a run's base and tuned models. Nothing imports this package."""
