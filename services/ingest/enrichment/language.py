"""Offline language detection: BCP 47 codes from py3langid, with a fast path and rules for
short texts and declared languages.

* URLs, @handles and hashtags are removed first (they are not language).
* Kana means Japanese, Hangul Korean, without asking the model.
* Fast path for English, the bulk of the traffic: at least two English function words
  and none of another language's make it ``en`` without the (slower) n-gram model.
* Otherwise py3langid decides, when confident: probability >= 0.5, or >= 0.9 for texts
  under 30 letters (n-gram models guess wildly on a few characters).
* Very short texts (under 8 letters: "ok", "thx!!"): English if every word is a common
  English chat word, else undetermined.
* A declared language (from the source) is normalized (``en_us`` -> ``en-US``) and kept
  when detection agrees on the language or is unsure; a confident detection of another
  language wins (the field says what the text *is*).
* Undetermined: None.
"""

from __future__ import annotations

import re
import threading

_WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)
_KANA_RE = re.compile(r"[\u3040-\u30ff]")
_HANGUL_RE = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_BCP47_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")  # singletons too (en-x-twain, ja-u-ca-japanese)
_HASHTAG_RE = re.compile(r"#\w+")

_STOPWORDS = {
    "en": frozenset("the and is are was were to of in on for with my your you i me it this that have has "
                    "not no be been at from but they we our what why how when where can do does did will "
                    "would should there their an or if just so all get got im i'm it's don't can't "
                    "still again never thanks thank please a i've you've you're we're they're isn't "
                    "wasn't didn't doesn't won't my me our us he she his her them than then just "
                    "about after before out up down over only also very really any some new one "
                    "order delivery delivered flight service customer support account card refund app "
                    "help hours hour minutes days day week weeks time waiting wait hold phone call "
                    "email website online store price bill money fee fees plan internet issue problem "
                    "love great good best bad worst terrible awesome amazing nice happy day today "
                    "tomorrow yesterday tonight who which anyone someone everyone nobody".split()),
    "es": frozenset("el la los las de del que y en un una es por para con no se su al lo como más pero "
                    "mi muy ya está hay esto gracias".split()),
    "fr": frozenset("le la les de des du et est un une pour pas que qui dans sur au avec ce mon ma mes "
                    "je vous nous il elle très merci c'est".split()),
    "de": frozenset("der die das und ist nicht ein eine zu den mit von für auf ich sie es dem auch "
                    "sich wir mein meine noch schon bitte danke".split()),
    "pt": frozenset("o a os as de do da dos das e é um uma para com não que em no na por meu minha "
                    "muito obrigado obrigada você".split()),
    "it": frozenset("il lo la gli le di del della e è un una per con non che in su mio mia molto "
                    "grazie sono".split()),
    "nl": frozenset("de het een en is niet van op voor met dat die ik je mijn zijn ook maar nog wel "
                    "bedankt".split()),
}
_WORD_LANGS: dict[str, tuple[str, ...]] = {}
for _lang, _words in _STOPWORDS.items():
    for _w in _words:
        _WORD_LANGS[_w] = (*_WORD_LANGS.get(_w, ()), _lang)
_EN_SHORT = frozenset("ok okay k thx thanks thank ty yes yeah yep no nope lol lmao omg wow nice great cool "
                      "help hi hello hey why how what when where who pls plz please sorry fail bad good "
                      "awful love hate wtf ugh meh fine sure bye".split())


def normalize_tag(tag: str | None) -> str | None:
    """A declared language as a BCP 47 tag (``EN_us`` -> ``en-US``), or None if it is not one."""
    if not tag:
        return None
    tag = tag.strip()
    if not _BCP47_RE.match(tag):
        return None
    parts = tag.replace("_", "-").split("-")
    out = [parts[0].lower()]
    for n, part in enumerate(parts[1:], start=1):
        if len(part) == 1:  # an extension or private use (en-x-twain): the rest is lower case
            out += [p.lower() for p in parts[n:]]
            break
        if len(part) == 2 and part.isalpha():
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


class LanguageDetector:
    """Thread-safe; the py3langid model (about 1 s to load) is loaded on first need."""

    def __init__(self) -> None:
        self._identifier = None
        self._lock = threading.Lock()

    def _model(self):
        if self._identifier is None:
            with self._lock:
                if self._identifier is None:
                    from py3langid.langid import MODEL_FILE, LanguageIdentifier
                    self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return self._identifier

    def warm_up(self) -> None:
        self._model()

    def detect(self, text: str, declared: str | None = None) -> str | None:
        """The language of ``text`` (already without URLs and handles) as BCP 47, or None."""
        declared_tag = normalize_tag(declared)
        declared_lang = declared_tag.split("-", 1)[0] if declared_tag else None
        detected, sure = self._detect(_HASHTAG_RE.sub(" ", text))
        if detected is None:
            return declared_tag
        if declared_lang is not None and (detected == declared_lang or not sure):
            return declared_tag
        return detected

    def _detect(self, text: str) -> tuple[str | None, bool]:
        words = _WORD_RE.findall(text.lower())
        if not words:
            return None, False
        ascii_only = text.isascii()
        if not ascii_only:
            if _KANA_RE.search(text):
                return "ja", True
            if _HANGUL_RE.search(text):
                return "ko", True
            words = [w.replace("’", "'") for w in words]
        letters = sum(map(len, words))
        if letters < 8:
            if all(w in _EN_SHORT for w in words):
                return "en", False
            return None, False
        counts = dict.fromkeys(_STOPWORDS, 0)
        for w in words:
            langs = _WORD_LANGS.get(w)
            if langs is not None:
                for lang in langs:
                    counts[lang] += 1
        hits = sorted(((n, lang) for lang, n in counts.items()), reverse=True)
        (best, best_lang), (second, _) = hits[0], hits[1]
        if best >= 2 and best >= 3 * second and best >= 0.2 * len(words):
            return best_lang, True
        english = next(n for n, lang in hits if lang == "en")
        lang, probability = self._model().classify(text[:600])
        if lang in ("zxx", "und") or probability < (0.9 if letters < 30 else 0.5):
            if (lang == "en" and probability >= 0.3) or (
                    english >= 1 and best_lang == "en" and english > second and all(w.isascii() for w in words)):
                return "en", False
            return None, False
        return lang, True
