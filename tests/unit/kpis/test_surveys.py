"""Surveys: NPS buckets, CSAT top-2 box of each answer's own scale, CES mean."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.kpis.engine import event, kpis

MINUTE = timedelta(minutes=1)


def test_csat_is_the_top_two_boxes_of_each_answers_scale() -> None:
    csat_answers = [(10, 10), (9, 10), (8, 10), (1, 10), (5, 5), (4, None), (3, 5)]
    events = [
        event(f"c{n}", "survey.answered", (n + 1) * MINUTE, survey="csat", score=score,
              **({} if scale is None else {"scale_max": scale}))
        for n, (score, scale) in enumerate(csat_answers)
    ]
    events += [
        event(f"n{n}", "survey.answered", (n + 1) * MINUTE, survey="nps", score=score)
        for n, score in enumerate((10, 9, 8, 7, 6, 0))
    ]
    events += [event("e1", "survey.answered", MINUTE, survey="ces", score=2),
               event("e2", "survey.answered", MINUTE, survey="ces", score=7)]
    assert kpis(events, ("csat", "nps", "ces"), "1h") == {
        "csat": 100 * 4 / 7,  # 10 and 9 of 10, 5 and 4 of 5 (the implicit scale)
        "nps": 0.0,  # 2 promoters, 2 passives, 2 detractors
        "ces": 4.5,
    }
