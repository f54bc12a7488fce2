"""Entry script: ``streamlit run app/main.py -- RUN_DIR`` (what ``retrieval app RUN_DIR`` runs).

Loads the run once (``app.loaders``), then hands the page to one of the views in
``views/``; the Geometry view exists only when the run has geometry results.
"""

from __future__ import annotations

import streamlit as st

from app import loaders
from app.ui import code, recommendation_box


def main() -> None:
    st.set_page_config(page_title="retrieval-tune · base vs tuned", page_icon=":material/search:", layout="wide")
    loaded = loaders.current()
    info = loaded.info
    tuned = "tuned model" if "tuned" in loaded.sides else "no tuned model (base only)"
    st.caption(
        f"Run {code(str(loaded.run.path))} · data {code(str(info['data']))} "
        f"({info.get('split') or 'test'} split) · base {code(str(info['base_model']))} · {tuned}"
    )
    recommendation_box(info.get("recommendation"))
    pages = [
        st.Page("views/search.py", title="Search", icon=":material/search:", default=True),
        st.Page("views/metrics.py", title="Metrics", icon=":material/monitoring:"),
    ]
    if loaded.run.geometry_json.exists():
        pages.append(st.Page("views/geometry.py", title="Geometry", icon=":material/scatter_plot:"))
    st.navigation(pages, position="top").run()


main()
