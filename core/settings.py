"""The application's typed settings: `graph.build_app` validates a config's `args` into these.

This is the one place that reads the environment (the data folder).
"""

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt

from .api_tokens import API_TOKEN_ENV, API_TOKEN_FILE_ENV
from .slots import ModelSlots

EXTENSION_ORIGIN_REGEX = r"^(moz-extension|chrome-extension|safari-web-extension)://[^/]+$"
"""Browser extensions' own pages (the popup). Firefox's content scripts of an extension with host
permissions (Manifest V2, as ocr_extension) send no Origin at all."""


def default_data_dir() -> Path:
    return Path(os.environ.get("OCR_SERVE_DATA_DIR") or Path.home() / ".local/share/ocr-translate-serve")



def sqlite_url(data_dir: Path) -> str:
    """The embedded default database: one SQLite file in the data folder."""
    return f"sqlite:///{Path(data_dir) / 'ocr_translate_serve.sqlite3'}"

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelDeploymentSettings(_Strict):
    max_models_per_replica: PositiveInt = 2
    """Models a replica keeps loaded (least recently used ones are unloaded)."""
    threads: PositiveInt | None = None
    """CPU threads of a replica's engines; default: its `num_cpus`, rounded up. More than its share
    suits a lone replica (`max_replicas: 1`) on an otherwise idle machine: keep replicas x threads
    within the machine's cores."""
    gpu_half_precision: bool = False
    """Load torch models in float16 when the replica has a GPU (half the memory, faster)."""
    max_model_loads_per_minute: PositiveInt = 12
    """Model loads a replica starts in a minute (preloads aside); past it, requests that need another
    model get 429: clients switching models on every request cannot keep a replica loading."""


class BatchingSettings(_Strict):
    """Given to the replicas as Serve's user_config (their `reconfigure`), apart from what they are built with."""

    max_batch_size: PositiveInt = 16
    batch_wait_timeout_s: NonNegativeFloat = 0.02


class BatchedDeploymentSettings(ModelDeploymentSettings, BatchingSettings):
    def split(self) -> tuple[ModelDeploymentSettings, BatchingSettings]:
        """What a replica is built with, and what it can change while it runs."""
        return (ModelDeploymentSettings(**self.model_dump(include=set(ModelDeploymentSettings.model_fields))),
                BatchingSettings(**self.model_dump(include=set(BatchingSettings.model_fields))))


class DetectorDeploymentSettings(BatchedDeploymentSettings):
    max_batch_size: PositiveInt = 1
    """Images of concurrent requests in one forward pass, on shared canvases. On a GPU far faster than
    one by one; on a CPU the work grows with the pixels either way, and a batch answers all its
    images when the last is done, so 1 (no batching) suits a CPU."""
    batch_wait_timeout_s: NonNegativeFloat = 0.0


class WeightSources(_Strict):
    """Where model weights are looked for, in order (the Hugging Face family reads this)."""

    models_dirs: list[Path] = Field(default_factory=list)
    """Folders holding models as <folder>/<org>/<name>, the Hugging Face repository id."""
    hub_downloads: bool = False
    """Download from the Hugging Face hub what is neither in a models folder nor in the Hugging
    Face cache. Off by default: a server should not fetch gigabytes because a client asked."""
    converted_dir: Path | None = None
    """Where models converted for faster engines (ONNX Runtime, CTranslate2) are kept; default
    <data_dir>/converted. Built on first load, reused while the source weights are unchanged."""
    allow_unpinned_downloads: bool = False
    """Also download entries that pin no `weights.revision` (a commit id): such a download takes what
    the repository's main branch is when it starts, once (that commit is then kept and loaded, and the
    log names it, to be pinned). Off by default: a download fetches only the commit its entry names."""
    max_download_bytes: PositiveInt = 8_000_000_000
    """The most one model's download may fetch (its chosen files); a larger one is refused before it starts."""
    download_free_disk_margin_bytes: int = Field(default=2_000_000_000, ge=0)
    """What a download must leave free on the Hugging Face cache's disk; one that would not is refused."""


class Limits(_Strict):
    max_body_bytes: PositiveInt = 64 * 1024 * 1024
    max_image_pixels: PositiveInt = 40_000_000
    max_text_chars: PositiveInt = 20_000
    max_blocks_per_image: PositiveInt = 500
    """Text blocks one image may have; past it the image is refused (413) before any OCR."""
    max_lines_per_image: PositiveInt = 2000
    """Text lines (OCR crops) one image may have; past it the image is refused (413) before any OCR."""
    max_pieces_per_text: PositiveInt = 64
    """Pieces one text may be split into for translation (`break_chars`, `break_newlines`); past it, 413."""
    max_beam_tokens: PositiveInt = 4096
    """`num_beams` x `max_new_tokens` of one translation: the work one text may ask of a model."""
    max_requests_in_flight: PositiveInt = 64
    """Requests one ingress replica works on at once; more get 503 with Retry-After. Keep the
    Ingress deployment's `max_ongoing_requests` above it, so they reach the ingress to be told."""
    max_requests_in_flight_per_client: PositiveInt = 16
    """Of those, what one client address may hold, so one page or program cannot take every slot.
    Behind a reverse proxy every client has the proxy's address: raise it to the proxy's share."""
    body_read_timeout_s: PositiveFloat = 30
    """A request body not received within this is refused (408): slow uploads cannot hold slots."""
    max_new_results_per_client_per_hour: PositiveInt = 10_000
    """Model outputs (detection runs, texts read, texts translated) one client without the API token may
    have computed in an hour on one ingress replica; past it, 429 (stored results stay free). Each is a
    stored row: a client varying its options cannot grow the store without bound. A reader's page is
    about 1 + 2 x its blocks."""
    max_concurrent_decodes: PositiveInt = 2
    """Images an ingress replica decodes at once: each may take up to 4 bytes per pixel of memory."""


class RetentionSettings(_Strict):
    """What the store forgets, checked every `prune_every_s` by each ingress replica (also
    `python -m service.store prune`). Manual translations and settings are always kept."""

    max_age_days: PositiveFloat | None = 180
    """Images nobody asked for in this many days, and machine translations this old; None: no age limit."""
    max_images: PositiveInt | None = None
    """Keep only this many most recently used images; None: no count limit."""
    prune_every_s: PositiveFloat = 3600


class CoalescingSettings(_Strict):
    across_replicas: bool = True
    """Identical work in flight on another ingress replica sharing the store is waited for, through
    a claim in the store (a write and a delete per work call, a heartbeat while it runs). A config
    with one ingress replica (configs/local.yaml) turns it off: identical requests in flight on
    that replica are still computed once."""


class CorsSettings(_Strict):
    allow_origins: list[str] = Field(default_factory=list)
    """Exact origins allowed besides the regex (e.g. a web page that calls the API)."""
    allow_origin_regex: str = EXTENSION_ORIGIN_REGEX
    """Not every localhost port: a page some dev server or notebook serves there is a web page like any
    other. The server's own page (/ui) is same-origin and needs no CORS."""


LOOPBACK_HOST_NAMES = ("localhost", "127.0.0.1", "[::1]")


class SecuritySettings(_Strict):
    token_required_from: Literal["remote", "everyone"] = "remote"
    """Who must send the API token to change the server's settings or read `/status`: clients other
    than this machine, or everyone. A client counts as this machine only when it connects from a
    loopback address, names a loopback host, and carries no proxy's forwarding headers."""
    override_models: list[str] = Field(default_factory=list)
    """Models any client may name per request (`box_model_id`, `ocr_model_id`, `tsl_model_id`) besides
    the selected ones; a client with the API token may name any usable model."""
    client_option_ranges: dict[str, dict[str, tuple[float, float]]] = Field(default_factory=dict)
    """Per model id of a model that calls a server per request (the `openai` family: metered, often
    paid), the [lowest, highest] value of each option a client without the API token may set
    (`{"llm/qwen": {"temperature": [0, 1]}}`); its other options stay at the entry's defaults for them."""
    allowed_hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_HOST_NAMES))
    """Host names the server answers to (`*.example.com` for subdomains, `*` for any): a web page
    whose name is re-pointed at 127.0.0.1 (DNS rebinding) is refused. Add the names clients use."""

    def relay_risk(self) -> str | None:
        """Why this machine's tokenless rights may reach other machines: the server answers to a
        name other machines use while this machine's clients need no token. A relay on this machine
        that adds no forwarding header (ssh -L, socat, nginx's bare proxy_pass) connects from
        loopback and names a loopback host, so every client it relays would be "this machine"."""
        outside = [host for host in self.allowed_hosts if host not in LOOPBACK_HOST_NAMES]
        if self.token_required_from != "remote" or not outside:
            return None
        return (f"security.allowed_hosts names {', '.join(outside)} while this machine's clients change settings "
                f"without the API token (token_required_from: remote). A relay on this machine that adds no "
                f"forwarding header (ssh -L, socat, nginx's bare proxy_pass) makes every client it relays "
                f"'this machine': behind one, set security.token_required_from: everyone.")


def listens_only_here(http_host: str) -> bool:
    """Whether a server listening on `http_host` is reached from this machine only (a loopback address)."""
    try:
        return ipaddress.ip_address(http_host.strip("[]")).is_loopback
    except ValueError:
        return http_host == "localhost"


def token_problem(http_host: str, has_token: bool) -> str | None:
    """Why a server listening on `http_host` must not start: on an address other machines reach,
    the settings endpoints would be open to them without a token (fail closed)."""
    if listens_only_here(http_host) or has_token:
        return None
    return (f"The HTTP server listens on {http_host}, which other machines reach, and no API token is set: "
            f"set {API_TOKEN_ENV} or {API_TOKEN_FILE_ENV} in the server's environment (or listen on 127.0.0.1).")


class ProfileSettings(_Strict):
    """The operator's bounds on reader profiles (`/r/<key>/`, docs/profiles.md). The bare paths (the
    default profile) keep the rules above; these hold for every other profile."""

    allowed_models: list[str] | None = None
    """Model ids a profile may select; None: every usable model that runs on this server's replicas. A
    model that calls a server per request (metered, often paid) is selectable only when listed here."""
    hub_downloads: bool = False
    """Whether selecting a model a profile lacks may start its download from the hub (when
    `weights.hub_downloads` allows downloads at all)."""
    max_requests_in_flight: PositiveInt = 8
    """Requests one profile may have in flight on one ingress replica, wherever they come from (many
    readers behind one address are many profiles); more get 503 with Retry-After."""
    max_new_results_per_hour: PositiveInt = 5_000
    """New model outputs one profile may have computed in an hour on one ingress replica (as
    `limits.max_new_results_per_client_per_hour`, counted per profile instead of per address)."""
    max_manual_translations: PositiveInt = 10_000
    """Manual translations one profile may keep; past it, setting a new one is refused."""
    max_glossary_terms: PositiveInt = 2_000
    """Glossary terms one profile may keep, all language pairs together."""
    expire_after_days: PositiveFloat | None = 365
    """A profile unused for this many days is deleted with everything it kept; None: never."""
    self_service: bool | None = None
    """A page (`/profiles/new`) where a reader makes a profile of their own; None: on when the server
    listens only on this machine, off otherwise."""

    def self_service_on(self, http_host: str) -> bool:
        """Whether `/profiles/new` answers on a server listening on `http_host` (`self_service`)."""
        return listens_only_here(http_host) if self.self_service is None else self.self_service


class DefaultSelection(_Strict):
    """The languages and models a new store starts with, so that a fresh `make run` reads and
    translates at once; the extension's choices replace them. Empty fields are left unselected."""

    lang_src: str = ""
    lang_dst: str = ""
    box_model: str = ""
    ocr_model: str = ""
    tsl_model: str = ""

    @property
    def models(self) -> ModelSlots[str]:
        """The models, read from the keys operators write in their configs."""
        return ModelSlots(box=self.box_model, ocr=self.ocr_model, tsl=self.tsl_model)


DATABASE_URL_ENV = "OCR_SERVE_DATABASE_URL"


class AppArgs(_Strict):
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    """SQLAlchemy URL; default: $OCR_SERVE_DATABASE_URL (where a password belongs: Serve shows
    configs on its dashboard), else an SQLite file in data_dir."""
    registry_dirs: list[Path] = Field(default_factory=list)
    """Folders of extra model entry YAML files, besides the built-in ones."""
    weights: WeightSources = Field(default_factory=WeightSources)
    model_settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per model id, backend settings that replace the entry's own, such as the engine that runs it:
    `{"easyocr/craft": {"engine": "torch"}}`. Checked against the backend when the registry loads."""
    default_selection: DefaultSelection = Field(default_factory=DefaultSelection)
    preload_selected_models: bool = True
    """At start, load the models of the persisted selection, so the first image is not slow."""
    limits: Limits = Field(default_factory=Limits)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    coalescing: CoalescingSettings = Field(default_factory=CoalescingSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    profiles: ProfileSettings = Field(default_factory=ProfileSettings)
    box_detector: DetectorDeploymentSettings = Field(default_factory=DetectorDeploymentSettings)
    ocr_reader: BatchedDeploymentSettings = Field(default_factory=BatchedDeploymentSettings)
    translator: BatchedDeploymentSettings = Field(default_factory=BatchedDeploymentSettings)

    @property
    def weight_sources(self) -> WeightSources:
        """The configured models folders, then <data_dir>/models; conversions in <data_dir>/converted."""
        folders = [*self.weights.models_dirs, self.data_dir / "models"]
        converted = self.weights.converted_dir or self.data_dir / "converted"
        return self.weights.model_copy(update={"models_dirs": [folder.expanduser() for folder in folders],
                                               "converted_dir": converted.expanduser()})

    @property
    def resolved_database_url(self) -> str:
        return (self.database_url or os.environ.get(DATABASE_URL_ENV)
                or sqlite_url(self.data_dir.expanduser().resolve()))
