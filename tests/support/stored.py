"""The keys the store tests file their runs under: one image, and a box, OCR and translation run of it."""

from service.store import RunKey, TranslationKey

MD5 = "0" * 32
BOX, OCR = RunKey("box", "en", "{}"), RunKey("ocr", "en", "{}")
TSL = TranslationKey("tsl", "en", "es", "{}")
