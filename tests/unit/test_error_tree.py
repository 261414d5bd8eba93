"""One error tree: everything quick_queue raises on purpose is a ``QuickQueueError``, with the
built-in a caller caught before kept as a base; bad settings and handlers fail clearly."""

from __future__ import annotations

import inspect
import math
import pickle
from typing import Any

import pytest

import quick_queue as qq
from quick_queue import errors
from quick_queue.settings import Settings


def test_every_error_class_is_under_the_root() -> None:
    classes = [
        obj for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, Exception) and not issubclass(obj, Warning)
    ]
    assert len(classes) >= 10
    for cls in classes:
        assert issubclass(cls, qq.QuickQueueError), cls
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} missing from the drawn tree"
    assert issubclass(qq.UnknownTopicWarning, UserWarning)
    assert "UnknownTopicWarning" in errors.__doc__


def test_value_error_stays_a_base_where_callers_catch_it() -> None:
    for cls in (qq.PayloadError, qq.ConfigurationError, qq.InvalidArgument):
        assert issubclass(cls, ValueError) and issubclass(cls, qq.QuickQueueError)
    assert issubclass(qq.PayloadError, qq.InvalidArgument)
    assert issubclass(qq.KVError, qq.QuickQueueError)
    for cls in (qq.HandlerError, qq.UnknownSetting, qq.ArgumentTypeError):
        assert issubclass(cls, TypeError) and issubclass(cls, qq.QuickQueueError)


def test_unreadable_record_pickles_with_its_bytes() -> None:
    error = qq.UnreadableRecord("the record of job 'j'", b"\xff\x00", "bad")
    again = pickle.loads(pickle.dumps(error))
    assert (again.raw, again.reason, str(again)) == (b"\xff\x00", "bad", str(error))


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("item_lease", 0, "item_lease must be > 0"),
        ("item_lease", math.nan, "item_lease must be a finite number"),
        ("item_lease", "30", "item_lease must be a finite number"),
        ("peek_max", 2.5, "peek_max must be an integer"),
        ("max_retries", True, "max_retries must be an integer"),
        ("selection_frac", 2.0, "selection_frac must be in (0, 1], got 2.0"),
        ("extend_every", 40.0, "shorter than item_lease"),
        ("default_priority", 5000, "default_priority must be in 0..1000"),
    ],
)
def test_bad_settings_raise_configuration_error(setting: str, value: Any, words: str) -> None:
    with pytest.raises(qq.ConfigurationError) as caught:
        Settings.build(**{setting: value})
    assert words in str(caught.value)


def test_unknown_setting_lists_the_real_ones(db: qq.Database) -> None:
    with pytest.raises(qq.UnknownSetting, match=r"no_such_setting.*item_lease"):
        qq.JobQueue(db, no_such_setting=1)


def test_a_perform_with_the_wrong_arguments_is_refused_at_registration() -> None:
    expected = r"perform\(self, payload: .*cannot be called as perform\(self, payload, meta\)"
    with pytest.raises(qq.HandlerError, match=expected):
        @qq.job(topic="one-arg")
        class OneArg:
            def perform(self, payload: Any) -> None:
                pass

    with pytest.raises(qq.HandlerError, match="cannot be called"):
        @qq.job(topic="no-self")
        class NoSelf:
            def perform() -> None:  # type: ignore[misc]
                pass


def test_perform_shapes_that_can_be_called_are_accepted() -> None:
    @qq.job(topic="plain")
    class Plain:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            pass

    @qq.job(topic="star")
    class Star:
        def perform(self, *args: Any) -> None:
            pass

    @qq.job(topic="static")
    class Static:
        @staticmethod
        def perform(payload: Any, meta: qq.JobMeta) -> None:
            pass

    @qq.job(topic="defaulted")
    class Defaulted:
        def perform(self, payload: Any, meta: qq.JobMeta, extra: int = 1) -> None:
            pass

    assert all(hasattr(c, "__qq_job__") for c in (Plain, Star, Static, Defaulted))


@pytest.mark.parametrize(
    "options",
    [{"topic": ""}, {"topic": "x", "priority": 1001}, {"topic": "x", "priority": "high"},
     {"topic": "x", "max_retries": -1}, {"topic": "x", "timeout": 0}],
)
def test_bad_job_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(qq.ConfigurationError):
        qq.job(**options)


def test_snooze_out_of_range_is_an_invalid_argument() -> None:
    with pytest.raises(qq.InvalidArgument, match="Snooze"):
        qq.Snooze(math.inf)


def test_one_configuration_error_class_for_urls_and_settings() -> None:
    with pytest.raises(qq.ConfigurationError) as from_url:
        qq.open("nope://x")
    with pytest.raises(qq.ConfigurationError) as from_settings:
        Settings.build(item_lease=-1)
    assert type(from_url.value) is type(from_settings.value) is qq.ConfigurationError
