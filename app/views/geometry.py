"""Geometry view: the embedding-space measures of the geometry step, and its plots (PNGs inside the run only)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import compute, loaders
from retrieval.readers import DataError


def main() -> None:
    loaded = loaders.current()
    geometry = loaders.read_artefacts(loaded.run)["geometry"]
    if not geometry:
        st.info("No geometry results in this run.")
        return
    st.subheader("Embedding geometry")
    rows = compute.geometry_rows(geometry)
    if rows:
        frame = pd.DataFrame(rows).set_index("measure")
        st.dataframe(frame, column_config={c: st.column_config.NumberColumn(format="%.4f") for c in frame.columns})
    run = loaded.run
    for png in sorted(run.geometry_dir.glob("*.png")):
        try:
            path = run.inside(png.relative_to(run.path))  # a link out of the run is refused
        except DataError as err:
            st.warning(str(err))
            continue
        st.image(str(path), caption=png.stem.replace("_", " "))


main()
