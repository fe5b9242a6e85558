"""Scraping a service's ``/metrics`` in tests: the samples by name and labels."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape: ``scrape["tickerhub_seq"]``, ``scrape.get("x_total", code="1000")``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.families: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    @property
    def names(self) -> set[str]:
        """Every sample name (``x_total``, ``x_bucket``, ``x_count``...)."""
        return {name for name, _ in self.samples}

    def get(self, name: str, default: float = 0.0, **labels: str) -> float:
        """The sample with exactly these labels, ``default`` when absent."""
        return self.samples.get((name, frozenset(labels.items())), default)

    def sum(self, name: str, **labels: str) -> float:
        """The sum over every sample of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)

    def __getitem__(self, name: str) -> float:
        return self.samples[(name, frozenset())]

    def labelled(self, name: str) -> Mapping[frozenset[tuple[str, str]], float]:
        return {ls: v for (n, ls), v in self.samples.items() if n == name}


def scrape(url: str, **kwargs: object) -> Scrape:
    """GET ``url`` (``http://host:port/metrics``) and parse it; fails on a non-200."""
    import httpx

    response = httpx.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:200]}"
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)
