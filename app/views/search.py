"""Search view: one query, base and tuned top-k side by side, relevance and rank changes marked."""

from __future__ import annotations

import streamlit as st

from app import compute, loaders, ui
from index import IndexMismatchError

QUERY_KEY = "query"  # the Metrics view sets it to open a test query here


def main() -> None:
    loaded = loaders.current()
    if loaded.corpus_warning:
        st.warning(loaded.corpus_warning)
    left, right = st.columns([4, 1])
    with left:
        raw = st.text_input(
            "Query", key=QUERY_KEY, placeholder="Type a query; a test query shows its relevant documents"
        )
    with right:
        k = st.number_input("Results per side", min_value=1, max_value=compute.DEPTH, value=10, key="k")
    text, cut = compute.clean_query(raw)
    if cut:
        st.warning(f"The query was {len(raw.strip()):,} characters long; only the first {compute.MAX_QUERY_CHARS:,} are searched.")
    if not text:
        st.info("Type a query above, or open a test query from the **Metrics** view (per-query table).")
        return
    qid = compute.match_query(text, compute.query_lookup(loaded.queries))
    relevant = loaded.qrels.get(qid, {}) if qid else {}
    if qid:
        st.caption(f"Test query {ui.code(qid)}: {len(relevant)} relevant document(s), marked below.")
    try:
        rankings = {name: compute.ranked(side.index, side.model, text) for name, side in loaded.sides.items()}
    except IndexMismatchError as err:
        st.error(f"The index does not belong to this model: {err}")
        st.code(loaders.tune_command(loaded.run.path, loaded.info["data"]), language="bash")
        return
    names = {"base": str(loaded.info["base_model"]), "tuned": f"fine-tuned from {loaded.info['base_model']}: {loaded.info.get('tuned_model')}/"}
    for column, (name, ranking) in zip(st.columns(len(rankings)), rankings.items()):
        before = rankings["base"] if name == "tuned" else None
        results = compute.hits(ranking, int(k), loaded.corpus, relevant, before)
        with column:
            ui.result_column(name, names[name], results, compute.first_relevant(ranking, relevant), bool(qid))


main()
