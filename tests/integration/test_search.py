"""Search (STAC API and static file alike) and band-name resolution."""

from __future__ import annotations

import datetime as dt

from cubemosaic.catalog import SearchRequest, search


def _request(**kw) -> SearchRequest:
    base = dict(
        collection="sentinel-2-l2a",
        bbox=(-122.325, 47.535, -122.265, 47.575),
        start_date=dt.date(2021, 12, 1),
        end_date=dt.date(2022, 3, 31),
    )
    return SearchRequest(**(base | kw))


def test_stac_api_matches_static_file_with_client_side_cloud_filter(demo, stac_api):
    # rustac's memory backend lacks the query extension: cloud cover is filtered on our side.
    for request in (_request(), _request(max_cloud_cover=50), _request(max_cloud_cover=50, max_items=4)):
        api = [i.id for i in search(stac_api, request)]
        static = [i.id for i in search(str(demo.items_path), request)]
        assert api == static
