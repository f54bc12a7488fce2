"""Metrics view: recall@k curves, the metrics table with p-values, and the per-query wins and losses."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import compute, loaders, ui

SEARCH_PAGE = "views/search.py"


def open_in_search(text: str) -> None:
    st.session_state["query"] = text
    st.switch_page(SEARCH_PAGE)


def main() -> None:
    loaded = loaders.current()
    found = loaders.read_artefacts(loaded.run)
    command = loaders.tune_command(loaded.run.path, loaded.info["data"])
    st.subheader("Recall@k")
    if found["curves"]:
        frame = pd.DataFrame(compute.curve_rows(found["curves"]))
        systems = [c for c in frame.columns if c != "k"]
        st.line_chart(frame, x="k", y=systems, color=compute.system_colors(systems),
                      x_label="k (documents retrieved)", y_label="mean recall@k")
    else:
        ui.missing("curves.json", command)
    st.subheader("Metrics")
    if found["metrics"]:
        rows = compute.metrics_rows(found["metrics"], found["comparison"])
        frame = pd.DataFrame([{**r, "p": compute.format_p(r["p"])} if "p" in r else r for r in rows]).set_index("metric")
        numbers = [c for c in frame.columns if c != "p"]
        frame[numbers] = frame[numbers].apply(pd.to_numeric)
        st.dataframe(frame, placeholder="–", column_config={c: st.column_config.NumberColumn(format="%.4f") for c in numbers})
        if "p" in frame:
            test = (found["comparison"] or {}).get("stat_test", "paired")
            st.caption(f"p: {test} test of tuned against base over the test queries (ranx compare); "
                       "p < 0.05 is a significant difference; empty where the two runs are identical.")
    else:
        ui.missing("metrics.json", command)
    st.subheader("Per query")
    if found["per_query"]:
        per_query_table(found["per_query"], loaded.queries)
    else:
        ui.missing("per_query.json", command)


def per_query_table(per_query: dict, queries: dict[str, str]) -> None:
    rows = compute.per_query_rows(per_query, queries)
    frame = pd.DataFrame(rows)
    if "delta" in frame:
        wins, losses = int((frame["delta"] > 0).sum()), int((frame["delta"] < 0).sum())
        st.markdown(f"Tuned vs base on {per_query['metric']}: **{wins} wins**, **{losses} losses**, {len(frame) - wins - losses} ties.")
        frame = frame.sort_values("delta", ascending=False, kind="stable")  # biggest wins first, losses last
    st.caption("Click a column header to sort; select a row to open the query in Search.")
    event = st.dataframe(
        frame, hide_index=True, on_select="rerun", selection_mode="single-row", key="per_query_table",
        column_config={c: st.column_config.NumberColumn(format="%.4f") for c in frame.columns if c not in ("qid", "query", "first relevant")},
    )
    picked = getattr(getattr(event, "selection", None), "rows", None) or []
    if picked:
        open_in_search(str(frame.iloc[picked[0]]["query"]))
    options = list(frame["qid"])
    labels = dict(zip(frame["qid"], frame["query"]))
    qid = st.selectbox("Open a query in Search", options, index=None, key="open_qid",
                       format_func=lambda q: f"{q}: {labels[q][:100]}", placeholder="choose a test query")
    if qid is not None and st.button("Show in Search", key="open_button"):
        open_in_search(labels[qid])


main()
