"""The search-quality study: does the search pick students that distil better? (``studentnas bench study
search-quality``). Modules: options, folder, picks, training, summary, report, driver (the entry points)."""
