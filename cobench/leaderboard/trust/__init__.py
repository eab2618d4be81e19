"""Whether a board's rows can be trusted, in one place.

* :mod:`.rows`: what each row can be trusted for: where its results came from, whether they
  contradict themselves or were trained on other data, whether their weights were re-evaluated,
  whether its cost ratio compares like with like, and its CO rate's interval over seeds;
* :mod:`.records`: the verification records (``.verified/<cell_id>.json``) a re-evaluation leaves;
* :mod:`.reevaluate`: ``cobench leaderboard verify``, re-evaluating a result's saved weights.

Nothing is imported here: re-evaluation needs torch, the rows do not.
"""
