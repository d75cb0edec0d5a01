"""The data layer: datasets and the validation split (:mod:`.datasets`), augmentation (:mod:`.augment`), the
labelled evaluation sets (:mod:`.loaders`) and fetching datasets (:mod:`.fetch`). Imports base, config, runtime."""
