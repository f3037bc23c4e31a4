"""Training-data recipes: score corpus -> clean MIDI -> rendered instrument domains.

There is no data hub here, so the training audio is synthesised: scores from the corpus that
``music21`` ships are exported to MIDI (:mod:`.corpus`, :mod:`.midi`), rendered with FluidSynth
and the FluidR3 General MIDI soundfont once per instrument domain (:mod:`.render`), and split by
piece with melody grouping so no tune leaks from train into val/test (:mod:`.split`). Rendering one
score with several GM programs gives *parallel* data: the test split holds the same notes in every
domain, so a translation can be scored against the real target rendering. :mod:`.whistle` is a
pure-numpy whistle synthesiser for an unseen source domain. :mod:`.build` is the entry point::

    python -m musictranslate.recipes.build --out data
"""
