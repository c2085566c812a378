"""The API server double's label selectors: every form a ``labelSelector`` string takes, and
the 400 it answers for one that does not parse."""

from __future__ import annotations

import pytest

from tests.kube_double.selectors import SelectorError, matches, parse

WEB = {"app": "web", "tier": "frontend", "track": ""}

CASES = [
    # selector, labels, matches?
    ("", WEB, True),
    ("app=web", WEB, True),
    ("app==web", WEB, True),
    ("app = web", WEB, True),
    ("app=api", WEB, False),
    ("app!=api", WEB, True),
    ("app!=web", WEB, False),
    ("release!=canary", WEB, True),  # an absent label differs from any value
    ("track=", WEB, True),  # present with the empty value
    ("release=", WEB, False),
    ("app in (web, api)", WEB, True),
    ("app in (api,db)", WEB, False),
    ("release in (canary)", WEB, False),
    ("app notin (api, db)", WEB, True),
    ("app notin (web)", WEB, False),
    ("release notin (canary)", WEB, True),
    ("tier", WEB, True),
    ("release", WEB, False),
    ("!release", WEB, True),
    ("!tier", WEB, False),
    ("app in (web,api),tier,!release", WEB, True),
    ("app in (web,api),tier,!release,track!=", WEB, False),
    (
        "app.kubernetes.io/name in (web), app=web",
        {"app.kubernetes.io/name": "web", "app": "web"},
        True,
    ),
    ("environment notin (production, qa),tier in (frontend)", WEB, True),
]


@pytest.mark.parametrize(("selector", "labels", "expected"), CASES)
def test_a_selector_matches_the_labels_it_describes(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert matches(parse(selector), labels) is expected


@pytest.mark.parametrize(
    "selector",
    [
        "app in ()",  # a set needs a value
        "app in (web",
        "app in web",
        "app notin",
        "app=web,",
        ",app=web",
        "app=web tier=frontend",
        "!",
        "app>web",  # not a label selector operator here
        "app=(web)",
    ],
)
def test_a_selector_that_does_not_parse_is_refused_as_the_api_server_refuses_it(
    selector: str,
) -> None:
    with pytest.raises(SelectorError) as refused:
        parse(selector)
    assert str(refused.value).startswith("unable to parse requirement: ")
