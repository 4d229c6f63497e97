"""The reading benchmark's development set and scoring (bench/reading.py runs it).

`manifest.yaml`: real photos, screenshots, scans and document pages with their sources, licences and ground
truth; `rendered.yaml`: the pages `render.py` draws for what the real ones lack; `images/`, `licenses/`;
`dataset.py` loads both; `scoring.py` scores a reading of a page. A package (this file) so that
`bench.reading.scoring` is importable beside the script bench/reading.py.
"""
