"""Search (STAC API and static file alike) and band-name resolution."""

from __future__ import annotations

from cubemosaic.catalog import search

from conftest import search_request


def test_stac_api_matches_static_file_with_client_side_cloud_filter(demo, stac_api):
    # rustac's memory backend lacks the query extension: cloud cover is filtered on our side.
    for request in (
        search_request(),
        search_request(max_cloud_cover=50),
        search_request(max_cloud_cover=50, max_items=4),
    ):
        api = [i.id for i in search(stac_api, request)]
        static = [i.id for i in search(str(demo.items_path), request)]
        assert api == static
