"""Language detection: BCP 47, short texts and declared languages."""

import pytest


@pytest.mark.parametrize("text, expected", [
    ("@acme my order never arrived, third time this month", "en"),
    ("Mi pedido nunca llegó y nadie me responde, qué vergüenza", "es"),
    ("Ich warte seit drei Stunden auf meine Bestellung", "de"),
    ("Merci beaucoup pour votre aide, le problème est résolu", "fr"),
    ("o meu pedido não chegou e ninguém responde", "pt"),
    ("注文した商品がまだ届きません", "ja"),
    ("주문한 상품이 아직 도착하지 않았어요", "ko"),
    ("Мой заказ так и не пришёл, поддержка молчит", "ru"),
])
def test_detects_the_language_of_a_post(enricher, text, expected):
    assert enricher.enrich(text).language == expected


def test_short_english_chat_is_english_and_short_noise_is_undetermined(enricher):
    assert enricher.enrich("thx!!").language == "en"
    assert enricher.enrich("ok").language == "en"
    assert enricher.enrich("👍👍").language is None
    assert enricher.enrich("zzq").language is None


def test_declared_language_wins_when_the_text_is_too_short_to_tell(enricher):
    assert enricher.enrich("zzq", declared_language="fi").language == "fi"
    assert enricher.enrich("ok!", declared_language="en_us").language == "en-US"


def test_declared_language_keeps_its_region_when_detection_agrees(enricher):
    assert enricher.enrich("my parcel never arrived and nobody answers", declared_language="en-GB").language == "en-GB"


def test_confident_detection_overrides_a_wrong_declaration(enricher):
    text = "Ich warte seit drei Stunden auf meine Bestellung und niemand antwortet"
    assert enricher.enrich(text, declared_language="en").language == "de"


def test_invalid_declared_language_is_ignored(enricher):
    assert enricher.enrich("zzq", declared_language="not a tag!").language is None
