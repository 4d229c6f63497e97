import pytest

from core.errors import BadRequest
from core.options import TSL_OPTIONS, resolve
from core.text import CharSet, PreProcessing, pre_tokenize, restore_spaces


def test_default_joins_lines_into_one_sentence():
    assert pre_tokenize("The quick brown fox\njumps over", PreProcessing()) == ["The quick brown fox jumps over"]


def test_no_space_languages_join_lines_without_spaces():
    assert pre_tokenize("猫は\n黒い", PreProcessing(), separator="") == ["猫は黒い"]


def test_break_newlines_translates_each_line():
    assert pre_tokenize("First line\nSecond line", PreProcessing(break_newlines=True)) == ["First line", "Second line"]


def test_break_chars_split_after_and_keep_the_character():
    assert pre_tokenize("Hi! How are you? Fine", PreProcessing(break_chars="!?")) == ["Hi!", "How are you?", "Fine"]


def test_ignore_chars_are_removed_literally():
    assert pre_tokenize("a*b]c-d", PreProcessing(ignore_chars="*]-")) == ["abcd"]


def test_restore_dash_newlines_rejoins_words():
    options = PreProcessing(restore_dash_newlines=True)
    assert pre_tokenize("a trans-\nlation of well-known", options) == ["a translation of well-known"]
    assert pre_tokenize("a trans-\nlation", PreProcessing()) == ["a trans- lation"]


def test_allowed_start_end_trims_garbage_at_line_ends():
    options = PreProcessing(allowed_start_end="a-zA-Z0-9.!?")
    assert pre_tokenize("|| Hello there! ~\n) and more.", options) == ["Hello there! and more."]


def test_invalid_allowed_start_end_is_a_client_error():
    with pytest.raises(BadRequest, match="allowed_start_end"):
        pre_tokenize("x", PreProcessing(allowed_start_end="z-a"))


def test_allowed_start_end_reads_the_original_servers_defaults():
    """The original's English default, a regex class body with escapes and a space."""
    options = PreProcessing(allowed_start_end="a-zA-Z0-9\\-\\.\\,\\;\\?\\! ")
    assert pre_tokenize("|| -Hello, there! ~\n) and more; ]", options) == ["-Hello, there! and more;"]


@pytest.mark.parametrize("spec,inside,outside", [
    ("a-c", "abc", "d-"), ("-a", "-a", "b"), ("a-", "a-", "b"), ("\\d", "7٣", "x"), ("\\w", "x_9é", "-"),
    ("\\s", " \t", "x"), ("\\[\\]\\^\\\\", "[]^\\", "a"), ("a\\-c", "a-c", "b"),
])
def test_character_sets_are_parsed_like_a_regex_class(spec, inside, outside):
    charset = CharSet.parse(spec)
    assert all(char in charset for char in inside) and not any(char in charset for char in outside)


def test_empty_text_gives_no_pieces():
    assert pre_tokenize(" \n ", PreProcessing()) == []


def test_restore_missing_spaces_splits_runs_of_letters_into_common_words():
    options = PreProcessing(restore_missing_spaces=True, language="en")
    assert pre_tokenize("Thequick brownfox, jumps\nover thelazy dog.", options) == [
        "The quick brown fox, jumps over the lazy dog."]
    # Words, names and rare runs stay as they are; so does everything when the option is off.
    assert pre_tokenize("Ayaka met Kowalski at Xqzvt", options) == ["Ayaka met Kowalski at Xqzvt"]
    assert pre_tokenize("thequick", PreProcessing(language="en")) == ["thequick"]


def test_restore_missing_spaces_uses_the_texts_language():
    assert pre_tokenize("lamaison", PreProcessing(restore_missing_spaces=True, language="fr")) == ["la maison"]
    assert pre_tokenize("lamaison", PreProcessing(restore_missing_spaces=True, language="tlh")) == ["lamaison"]


@pytest.mark.parametrize("word,restored", [
    ('"thequick,"', '"the quick,"'),  # punctuation around the run stays in place
    ("((thequick))", "((the quick))"),
    ('"acat"', '"a cat"'),
    ("((acat))", "((a cat))"),
    ("...", "..."),  # no letters at all
    ("", ""),
    ("isit", "is it"),  # the shortest run that is split
    ("iup", "iup"),  # shorter runs are left alone, though "i up" would be common words
    ("acat", "a cat"),  # a one-letter word at the start
    ("ahouse", "a house"),
    ("thecats", "the cats"),
    ("thequickbrownfoxjumpsoverthelazydogagain", "the quick brown fox jumps over the lazy dog again"),  # 40
    ("thequickbrownfoxjumpsoverthelazydogagainx", "thequickbrownfoxjumpsoverthelazydogagainx"),  # 41: too long
    ("thequick2brownfox", "thequick2brownfox"),  # not only letters
])
def test_restore_spaces_cases(word, restored):
    assert restore_spaces(word, "en") == restored


def test_pre_processing_of_a_models_options_keeps_the_language_and_the_options():
    options = resolve(TSL_OPTIONS, {"break_newlines": True, "restore_missing_spaces": True, "ignore_chars": "#"})
    processing = PreProcessing.of(options, "fr")
    assert processing == PreProcessing(break_newlines=True, restore_missing_spaces=True, ignore_chars="#",
                                       language="fr")


def test_allowed_start_end_trims_only_the_ends_of_each_line():
    options = PreProcessing(allowed_start_end="a-zA-Z", break_newlines=True)
    assert pre_tokenize("Hi |there|\n||Fine|", options) == ["Hi |there", "Fine"]


def test_a_run_of_break_characters_ends_one_piece():
    assert pre_tokenize("Wait!? No!", PreProcessing(break_chars="!?")) == ["Wait!?", "No!"]


def test_missing_spaces_are_restored_line_by_line():
    options = PreProcessing(restore_missing_spaces=True, break_newlines=True, language="en")
    assert pre_tokenize("thequick fox\nbrownfox", options) == ["the quick fox", "brown fox"]
