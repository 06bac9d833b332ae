"""Accepting a simulcast publish: RIDs in the offer, ``a=rid``/``a=simulcast`` in our answer.

aiortc 1.16 neither parses ``a=rid`` nor ``a=simulcast`` (RFC 8853) nor answers them, and a
browser that finds no ``a=simulcast:recv`` in the answer falls back to one encoding. So, for
every video section whose offer says ``a=simulcast:send``, the answer aiortc wrote is amended
(text only; aiortc never needs to know):

* ``a=extmap`` for ``urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id`` (and the repaired-stream
  one) with the offer's ids: the layers' SSRCs are not in the offer, and the RID extension on
  their first packets is how the SFU tells which SSRC carries which layer;
* ``a=rid:<rid> recv`` for each offered RID, and ``a=simulcast:recv`` with them in the offer's
  order.

The layers are taken lowest first in the order the offer lists them (the web client sends
``q;h;f``: 1/4, 1/2, full resolution); the SFU also learns each layer's height from its
keyframes. Paused (``~``) and alternative (``,``) RIDs are reduced to the first, unpaused one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
#: RFC 8851: a rid-id is alphanumeric plus - and _, at most 16 here (Chromium's limit too).
_RID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
MAX_LAYERS = 3


@dataclass(frozen=True, slots=True)
class SimulcastSection:
    """One offered video section that sends simulcast."""

    index: int  # position among the m-sections
    rids: tuple[str, ...]  # lowest layer first
    rid_ext_id: int
    repaired_ext_id: int | None


def _sections(sdp: str) -> list[list[str]]:
    """The SDP split into [session lines] + one list of lines per m-section."""
    out: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            out.append([])
        out[-1].append(line)
    return out


def _attributes(lines: list[str], name: str) -> list[str]:
    prefix = f"a={name}:"
    return [line[len(prefix) :].strip() for line in lines if line.startswith(prefix)]


def _extmap_id(lines: list[str], uri: str) -> int | None:
    for value in _attributes(lines, "extmap"):
        parts = value.split()
        if len(parts) >= 2 and parts[1] == uri:
            ident = parts[0].split("/")[0]
            if ident.isdigit() and 1 <= int(ident) <= 14:
                return int(ident)
    return None


def _send_rids(lines: list[str]) -> tuple[str, ...]:
    """The RIDs of ``a=simulcast:send``, each offered with ``a=rid:<id> send``."""
    offered = {v.split()[0] for v in _attributes(lines, "rid") if v.split()[1:2] == ["send"]}
    for value in _attributes(lines, "simulcast"):
        parts = value.split()
        if len(parts) < 2 or parts[0] != "send":
            continue
        rids = []
        for alternatives in parts[1].split(";"):
            rid = alternatives.split(",")[0].lstrip("~")
            if _RID.match(rid) and rid in offered and rid not in rids:
                rids.append(rid)
        return tuple(rids[:MAX_LAYERS])
    return ()


def simulcast_sections(offer_sdp: str) -> list[SimulcastSection]:
    """The offer's video sections that send two or more RIDs with the RID extension."""
    found = []
    for index, lines in enumerate(_sections(offer_sdp)[1:]):
        if not lines[0].startswith("m=video "):
            continue
        rids = _send_rids(lines)
        rid_ext = _extmap_id(lines, RID_URI)
        if len(rids) < 2 or rid_ext is None:
            continue
        found.append(SimulcastSection(index, rids, rid_ext, _extmap_id(lines, REPAIRED_RID_URI)))
    return found


def accept_simulcast(offer_sdp: str, answer_sdp: str) -> str:
    """``answer_sdp`` with every simulcast video section of the offer accepted (see above)."""
    wanted = {s.index: s for s in simulcast_sections(offer_sdp)}
    if not wanted:
        return answer_sdp
    sections = _sections(answer_sdp)
    for index, lines in enumerate(sections[1:]):
        section = wanted.get(index)
        if section is None or lines[0].split()[1:2] == ["0"] or "a=inactive" in lines:
            continue
        taken = {v.split()[0].split("/")[0] for v in _attributes(lines, "extmap")}
        extmaps = []
        for ident, uri in (
            (section.rid_ext_id, RID_URI),
            (section.repaired_ext_id, REPAIRED_RID_URI),
        ):
            if ident is not None and str(ident) not in taken and _extmap_id(lines, uri) is None:
                extmaps.append(f"a=extmap:{ident} {uri}")
        last_extmap = max(
            (i for i, line in enumerate(lines) if line.startswith("a=extmap:")), default=0
        )
        lines[last_extmap + 1 : last_extmap + 1] = extmaps
        lines += [f"a=rid:{rid} recv" for rid in section.rids]
        lines.append("a=simulcast:recv " + ";".join(section.rids))
    return "\r\n".join(line for part in sections for line in part) + "\r\n"


def answered_extensions(section: SimulcastSection) -> dict[str, int]:
    """The extension ids ``accept_simulcast`` added for ``section`` (to read RIDs by)."""
    out = {RID_URI: section.rid_ext_id}
    if section.repaired_ext_id is not None:
        out[REPAIRED_RID_URI] = section.repaired_ext_id
    return out


def accepted_simulcast(answer_sdp: str) -> dict[str, list[str]]:
    """mid -> the ``a=rid``/``a=simulcast`` lines ``accept_simulcast`` wrote into our answer.

    aiortc's parser drops them, so an offer the SFU makes later on the same connection (one
    connection per participant) would leave them out, and a browser that sees an offer without
    ``a=simulcast:recv`` falls back to one encoding: its lowest layer."""
    found = {}
    for lines in _sections(answer_sdp)[1:]:
        mids = _attributes(lines, "mid")
        kept = [line for line in lines if line.startswith(("a=rid:", "a=simulcast:"))]
        if mids and kept:
            found[mids[0]] = kept
    return found


def restore_simulcast(sdp: str, by_mid: dict[str, list[str]]) -> str:
    """``sdp`` with each section's lines from ``accepted_simulcast`` put back."""
    if not by_mid:
        return sdp
    sections = _sections(sdp)
    for lines in sections[1:]:
        mids = _attributes(lines, "mid")
        if mids and mids[0] in by_mid and "a=inactive" not in lines:
            lines += by_mid[mids[0]]
    return "\r\n".join(line for part in sections for line in part) + "\r\n"
