"""Rendering helpers: how a result column, a hit and a missing artefact look. No computing here."""

from __future__ import annotations

import re

import streamlit as st

from app.compute import Hit

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>$~:-])")
LABELS = {"base": "Base model", "tuned": "Tuned model"}


def md_escape(text: str) -> str:
    """Text shown verbatim inside Markdown (titles may hold ``*``, ``$``, brackets...)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def badge_markdown(badge: str) -> str:
    if not badge:
        return ":gray-badge[=]"
    color = "blue" if badge == "new" else ("green" if badge.startswith("↑") else "orange")
    return f":{color}-badge[{badge}]"


def code(text: str) -> str:
    """Inline code: shown as is (backslash escapes would show), so only backticks are dropped."""
    return "`" + text.replace("`", "'") + "`"


def hit_card(side: str, hit: Hit, show_badge: bool) -> None:
    # The key names the card in the page's CSS (st-key-hit-<side>-<rank>): the browser test waits on it.
    with st.container(border=True, key=f"hit-{side}-{hit.rank}", gap="xxsmall"):
        marks = []
        if show_badge:
            marks.append(badge_markdown(hit.badge))
        if hit.relevant:
            marks.append(":green-badge[:material/check: relevant]")
        st.markdown(f"**{hit.rank}.** {md_escape(hit.title)} {' '.join(marks)}")
        st.caption(f"score {hit.score:.4f} · {code(hit.doc_id)}")
        if hit.snippet:
            st.markdown(f":small[{md_escape(hit.snippet)}]")


def result_column(name: str, model_name: str, results: list[Hit], first_relevant: int | None, judged: bool) -> None:
    st.subheader(LABELS.get(name, name))
    st.caption(code(model_name))
    if judged:
        where = "not in the top 100" if first_relevant is None else f"rank {first_relevant}"
        st.markdown(f"First relevant document: **{where}**")
    for hit in results:
        hit_card(name, hit, show_badge=name == "tuned")


def missing(what: str, command: str) -> None:
    st.info(f"{what} is not in this run directory yet. It is written by:")
    st.code(command, language="bash")


def recommendation_box(rec: dict | None) -> None:
    """Which system the run recommends deploying, and its warnings, as the first thing on the page."""
    if not rec:
        return
    st.success(f"**Deploy: {rec.get('deploy', rec.get('system'))}** · chosen on dev evidence: {rec.get('reason', '')}",
               icon=":material/rocket_launch:")
    for warning in rec.get("warnings") or []:
        st.warning(warning, icon=":material/warning:")

