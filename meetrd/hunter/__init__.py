"""
Hunting: meetrd scrapes ("hunts") metrics from nodes over HTTP.

L{meetrd.hunter.pages} turns a hunted page (Prometheus text, OpenMetrics or
JSON) into L{meetrd.points.Point}s; L{meetrd.hunter.prompage} and
L{meetrd.hunter.jsonpage} hold the format-specific readers it uses, which
fill the L{meetrd.hunter.pagebuild.PageBuilder} it gives them.
"""
