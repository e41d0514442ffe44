import pytest

from services.inference.stops import Piece, StopMatcher


def run(stops, texts):
    matcher = StopMatcher(tuple(stops))
    out, stopped = [], False
    for i, text in enumerate(texts):
        release = matcher.feed(Piece(i, text))
        out += [p.text for p in release.pieces]
        if release.stopped:
            stopped = True
            break
    else:
        out += [p.text for p in matcher.flush()]
    return "".join(out), stopped


def test_no_stop_strings_pass_every_token_through_at_once():
    matcher = StopMatcher(())
    assert [p.text for p in matcher.feed(Piece(1, "Hi")).pieces] == ["Hi"]


def test_a_stop_inside_one_token_cuts_the_text_before_it():
    assert run(["\n\n"], ["Red.", " Blue.\n\nMore"]) == ("Red. Blue.", True)


def test_a_stop_split_across_tokens_is_found_and_never_leaks():
    assert run(["END"], ["one E", "N", "D two"]) == ("one ", True)


def test_text_that_only_looked_like_a_stop_is_released_in_order():
    assert run(["END"], ["an E", "N", "ough"]) == ("an ENough", False)


def test_held_text_is_flushed_when_the_choice_ends_otherwise():
    assert run(["stop here"], ["we stop"]) == ("we stop", False)


def test_the_earliest_of_several_stops_wins():
    assert run(["b", "a"], ["xyab"]) == ("xy", True)


@pytest.mark.parametrize("split", range(1, 9))
def test_any_split_of_the_same_text_gives_the_same_output(split):
    text = "Hello, 世界! STOP now"
    pieces = [text[i:i + split] for i in range(0, len(text), split)]
    assert run(["STOP"], pieces) == ("Hello, 世界! ", True)


def test_pieces_are_released_only_when_they_can_no_longer_start_a_stop():
    matcher = StopMatcher(("<end>",))
    assert [p.text for p in matcher.feed(Piece(1, "ok <e")).pieces] == []
    assert [p.text for p in matcher.feed(Piece(2, "x")).pieces] == ["ok <e", "x"]
