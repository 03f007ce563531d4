"""A small English stopword list shared by the rationale analysis and the rationale extractor.

Our own list of common function words: articles, pronouns, auxiliaries, prepositions and
conjunctions. Two groups are left out on purpose because they change what an answer means:
negations ("not", "no", "never", "nor", "without") and comparatives ("more", "less", "most",
"least"), which are often the answer itself (QuaRTz answers "more" / "less"). "where", "when",
"why" and "how" are also kept as content words: they name what a question asks for.
Entries are lowercase; apostrophes are the ASCII ``'``.
"""

from __future__ import annotations

STOPWORDS: frozenset[str] = frozenset(
    """
    a an the this that these those some any each every all both such other another own same
    i me my mine myself we us our ours ourselves you your yours yourself yourselves
    he him his himself she her hers herself it its itself they them their theirs themselves
    what which who whom whose
    am is are was were be been being have has had having do does did doing
    will would shall should can could may might must
    i'm you're he's she's it's we're they're i've you've we've they've i'd you'd he'd she'd
    we'd they'd i'll you'll he'll she'll we'll they'll let's that's there's what's who's
    of in on at by for with about against between into through during before after above
    below to from up down out off over under upon onto within along across toward towards
    and but or so if then than because as until while although though whether
    there here very too also just only again further once
    """.split()
)

__all__ = ["STOPWORDS"]
