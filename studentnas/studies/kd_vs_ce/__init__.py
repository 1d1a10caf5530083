"""The KD-vs-CE study: one student trained with KD and with CE only, per seed (``studentnas bench study
kd-vs-ce``). Modules: options, folder, report, driver (the entry points)."""
