"""The runtime layer: process groups and collectives (:mod:`.distributed`), the launch environment
(:mod:`.launchenv`), seeding (:mod:`.seeding`), checkpoints (:mod:`.checkpoint`), precision (:mod:`.precision`) and
the learning-rate schedules (:mod:`.schedule`). Imports base and config."""
