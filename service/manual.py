"""The reader's own translations: what every model translated a text to, a manual translation that
replaces them (shown instead of the machine's unless the request says otherwise), and the glossary of
terms every translation of a language pair follows."""

from core import glossary, languages
from core.answers import GlossaryAnswer, StoredTranslation
from core.errors import BadRequest, Forbidden, LanguagesNotSet, NotFound, PayloadTooLarge
from core.settings import ProfileSettings

from .off_loop import off_the_loop
from .store import DEFAULT_PROFILE, Selection, Store


class ManualTranslations:
    def __init__(self, store: Store, profiles: ProfileSettings | None = None):
        self.store = store
        self.profiles = profiles or ProfileSettings()

    def _languages_set(self, profile: int) -> Selection:
        selection = self.store.selection(profile)
        if not selection.lang_src or not selection.lang_dst:
            raise LanguagesNotSet("Languages are not selected: choose the source and target languages first.")
        return selection

    def _source_of(self, text: str, selection: Selection) -> str | None:
        """The selected source language; when it is detected, the one the text was last translated from."""
        if selection.lang_src != languages.AUTO:
            return selection.lang_src
        return self.store.translated_from(text, selection.lang_dst)

    @off_the_loop
    def get_translations(self, text: str, profile: int = DEFAULT_PROFILE) -> list[StoredTranslation]:
        """The machine translations of the text and the profile's own one."""
        selection = self._languages_set(profile)
        src = self._source_of(text, selection)
        found = self.store.translations_of(text, src, selection.lang_dst, profile) if src else []
        if not found and not self.store.knows_text(text):
            raise NotFound("This text was never OCR'd or translated here.")
        return [StoredTranslation(text=translation, model=model) for model, translation in found]

    @off_the_loop
    def set_manual_translation(self, text: str, translation: str, profile: int = DEFAULT_PROFILE) -> None:
        selection = self._languages_set(profile)
        if not self.store.knows_text(text):
            raise NotFound("This text was never OCR'd or translated here, so it has no translation to replace.")
        src = self._source_of(text, selection)
        if src is None:
            raise NotFound(f"This text was never translated into {languages.name_of(selection.lang_dst)}, so its "
                           f"detected language is not known: it is shown as read.")
        if profile != DEFAULT_PROFILE and not self.store.find_manual_translations([text], src, selection.lang_dst,
                                                                                  profile):
            self._check_room(self.store.count_manual_translations(profile), self.profiles.max_manual_translations,
                             "manual translations", "max_manual_translations",
                             "replacing one of them (the same text in the same languages) is still allowed")
        self.store.set_manual_translation(text, src, selection.lang_dst, translation, profile)

    @staticmethod
    def _check_room(kept: int, cap: int, what: str, setting: str, room: str) -> None:
        """Refuse (403) a reader profile's new item past the operator's cap, before anything is stored:
        one key's holder cannot grow the store without bound. (The callers leave the default profile,
        the operator's own, uncapped.)"""
        if kept >= cap:
            raise Forbidden(f"This profile keeps {cap} {what}, the most the server's operator allows "
                            f"(profiles.{setting}): {room}.")

    def _pair(self, lang_src: str | None, lang_dst: str | None, profile: int) -> tuple[str, str]:
        """The pair a glossary call names, or the profile's selected one."""
        if lang_src is None or lang_dst is None:
            selection = self._languages_set(profile)
            lang_src, lang_dst = lang_src or selection.lang_src, lang_dst or selection.lang_dst
        if lang_src == languages.AUTO:
            raise BadRequest("A glossary belongs to one language pair and the source language is detected: name "
                             "it in 'lang_src'.")
        return languages.check_code(lang_src), languages.check_code(lang_dst)

    @off_the_loop
    def glossary(self, lang_src: str | None = None, lang_dst: str | None = None,
                 profile: int = DEFAULT_PROFILE) -> GlossaryAnswer:
        src, dst = self._pair(lang_src, lang_dst, profile)
        return GlossaryAnswer(lang_src=src, lang_dst=dst, terms=self.store.glossary(src, dst, profile).as_dict())

    @off_the_loop
    def set_glossary_term(self, term: str, translation: str, lang_src: str | None = None,
                          lang_dst: str | None = None, profile: int = DEFAULT_PROFILE) -> None:
        src, dst = self._pair(lang_src, lang_dst, profile)
        term, translation = term.strip(), translation.strip()
        if not term or not translation:
            raise BadRequest("A glossary term and its translation cannot be empty.")
        if len(term) > glossary.MAX_TERM_CHARS or len(translation) > glossary.MAX_TRANSLATION_CHARS:
            raise BadRequest(f"A glossary term has at most {glossary.MAX_TERM_CHARS} characters and its "
                             f"translation at most {glossary.MAX_TRANSLATION_CHARS}.")
        terms = self.store.glossary(src, dst, profile).as_dict()
        if term not in terms and len(terms) >= glossary.MAX_TERMS:
            raise PayloadTooLarge(f"The {src}->{dst} glossary has the most terms it may ({glossary.MAX_TERMS}): "
                                  "delete some first.")
        if profile != DEFAULT_PROFILE and term not in terms:
            self._check_room(self.store.count_glossary_terms(profile), self.profiles.max_glossary_terms,
                             "glossary terms", "max_glossary_terms",
                             "delete some (any language pair) to add others; changing a term's translation is "
                             "still allowed")
        self.store.set_glossary_term(src, dst, term, translation, profile)

    @off_the_loop
    def delete_glossary_term(self, term: str, lang_src: str | None = None, lang_dst: str | None = None,
                             profile: int = DEFAULT_PROFILE) -> None:
        src, dst = self._pair(lang_src, lang_dst, profile)
        if not self.store.delete_glossary_term(src, dst, term.strip(), profile):
            raise NotFound(f"The {src}->{dst} glossary has no term {term.strip()!r}.")
