"""The fault and hostile-input campaign as the project's own suite (issue 13).

``fleet`` starts real daemons, ``hostile`` generates hostile requests per route with
hypothesis, ``rawhttp`` holds malformed HTTP/1.1 sent over raw sockets, ``client`` sends bytes
and reads answers, ``verdict`` classifies them. ``bench/campaign.py`` runs the long versions.
"""
