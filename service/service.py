"""What every endpoint of the extension API does, without HTTP or Serve: one owner for each part.

- `catalogue.py`: languages and models on offer, the selection, options, plugins, model states;
- `pipeline.py`: `run_ocrtsl` and `run_tsl`, top to bottom;
- `manual.py`: the reader's own translations.

The ingress parses requests and calls them; tests build the same service with plain model stages.
"""

from core.settings import Limits, ProfileSettings, RetentionSettings, SecuritySettings
from models_registry import Registry

from .catalogue import Catalogue, Downloads
from .manual import ManualTranslations
from .observe import Observer
from .pipeline import Pipeline
from .stages import ModelStages
from .store import Store


class OcrTranslateService:
    def __init__(self, store: Store, registry: Registry, stages: ModelStages, limits: Limits,
                 observer: Observer | None = None, security: SecuritySettings | None = None,
                 retention: RetentionSettings | None = None, coalesce_across_replicas: bool = True,
                 downloads: Downloads | None = None, profiles: ProfileSettings | None = None):
        self.store = store
        self.stages = stages
        self.catalogue = Catalogue(store, registry, stages, downloads, profiles)
        self.pipeline = Pipeline(store, self.catalogue, stages, limits, observer, security, retention,
                                 coalesce_across_replicas)
        self.manual = ManualTranslations(store, profiles)
