"""The models layer: encoders (:mod:`.encoder`), shuffle BN (:mod:`.shuffle_bn`), the mechanism base
(:mod:`.mechanism`), its registry (:mod:`.registry`), one file per mechanism (:mod:`.moco`, :mod:`.end_to_end`,
:mod:`.memory_bank`) and :func:`~pretrain.models.build.build_pretrainer` (:mod:`.build`). Imports the layers below."""
