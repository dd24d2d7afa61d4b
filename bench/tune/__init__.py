"""Fair hyper-parameter tuning (``python -m bench tune``): the validation split carved out of the
training identities (``split``), one seeded Optuna study per loss with an equal budget
(``study``), the retraining of each loss's best and default configurations over seeds in both
backends (``final``) and the report (``report``)."""
