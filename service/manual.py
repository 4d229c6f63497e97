"""The reader's own translations: what every model translated a text to, and a manual translation
that replaces them (shown instead of the machine's unless the request says otherwise)."""

from core.answers import StoredTranslation
from core.errors import LanguagesNotSet, NotFound

from .store import Selection, Store, off_the_loop


class ManualTranslations:
    def __init__(self, store: Store):
        self.store = store

    def _languages_set(self) -> Selection:
        selection = self.store.selection()
        if not selection.lang_src or not selection.lang_dst:
            raise LanguagesNotSet("Languages are not selected: choose the source and target languages first.")
        return selection

    @off_the_loop
    def get_translations(self, text: str) -> list[StoredTranslation]:
        selection = self._languages_set()
        found = self.store.translations_of(text, selection.lang_src, selection.lang_dst)
        if found is None:
            raise NotFound("This text was never OCR'd or translated here.")
        return [StoredTranslation(text=translation, model=model) for model, translation in found]

    @off_the_loop
    def set_manual_translation(self, text: str, translation: str) -> None:
        selection = self._languages_set()
        if not self.store.knows_text(text):
            raise NotFound("This text was never OCR'd or translated here, so it has no translation to replace.")
        self.store.set_manual_translation(text, selection.lang_src, selection.lang_dst, translation)
