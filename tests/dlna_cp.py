"""A UPnP control point for tests/it/dlna.rs, on async-upnp-client (PyPI): discovers the daemon's
MediaServer by M-SEARCH from 127.0.0.1, reads its description, browses the whole ContentDirectory
(paging with a small RequestedCount) and streams chosen items' <res> URLs. tests/it/dlna.rs runs
it inside the test's own network namespace, where `lo` is the only link: the multicast stays there.

Usage: dlna_cp.py PORT PAGE [TITLE ...]  -- prints one JSON object; exits non-zero on failure.
Every wait is bounded.
"""

import asyncio
import hashlib
import json
import sys

import aiohttp
from async_upnp_client.aiohttp import AiohttpRequester
from async_upnp_client.client_factory import UpnpFactory
from async_upnp_client.search import async_search
from didl_lite import didl_lite

MEDIA_SERVER = "urn:schemas-upnp-org:device:MediaServer:1"
CDS = "urn:schemas-upnp-org:service:ContentDirectory:1"
CM = "urn:schemas-upnp-org:service:ConnectionManager:1"
MAX_OBJECTS = 2000


async def search(port, target):
    """STs and USNs of the answers to one M-SEARCH whose LOCATION is on our daemon's port."""
    found = []

    async def on_response(headers):
        loc = headers.get("location", "")
        if f":{port}/" in loc:
            found.append({"st": headers.get("st"), "usn": headers.get("usn"), "location": loc})

    await async_search(
        on_response,
        timeout=2,
        search_target=target,
        source=("127.0.0.1", 0),
        target=("239.255.255.250", 1900),
    )
    return found


async def browse_all(cds, page):
    """Every object under "0", depth first, each container paged `page` at a time."""
    browse = cds.action("Browse")
    out = []
    root = await browse.async_call(
        ObjectID="0", BrowseFlag="BrowseMetadata", Filter="*",
        StartingIndex=0, RequestedCount=0, SortCriteria="")
    out.append(describe(didl_lite.from_xml_string(root["Result"])[0], None))
    stack = ["0"]
    while stack and len(out) < MAX_OBJECTS:
        cid = stack.pop()
        start, total = 0, None
        while total is None or start < total:
            r = await browse.async_call(
                ObjectID=cid, BrowseFlag="BrowseDirectChildren", Filter="*",
                StartingIndex=start, RequestedCount=page, SortCriteria="")
            objs = didl_lite.from_xml_string(r["Result"])
            total = int(r["TotalMatches"])
            if int(r["NumberReturned"]) != len(objs):
                raise SystemExit(f"NumberReturned {r['NumberReturned']} but {len(objs)} objects")
            if not objs:
                break
            for o in objs:
                d = describe(o, page)
                out.append(d)
                if d["container"]:
                    stack.append(d["id"])
            start += len(objs)
    return out


def describe(o, page):
    container = isinstance(o, didl_lite.Container)
    res = [{"url": r.uri, "protocol_info": r.protocol_info, "size": int(r.size) if r.size else None}
           for r in (o.res or [])]
    return {
        "id": o.id, "parent_id": o.parent_id, "title": o.title, "class": o.upnp_class,
        "container": container, "child_count": getattr(o, "child_count", None), "res": res,
        "page": page,
    }


async def fetch(url):
    """The body's SHA-256 and length, and the DLNA headers of a GET that asks for them."""
    h = hashlib.sha256()
    n = 0
    headers = {"transferMode.dlna.org": "Streaming", "getcontentFeatures.dlna.org": "1"}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        async with s.get(url, headers=headers) as r:
            async for chunk in r.content.iter_chunked(1 << 16):
                h.update(chunk)
                n += len(chunk)
            return {
                "status": r.status, "sha256": h.hexdigest(), "length": n,
                "transfer_mode": r.headers.get("transferMode.dlna.org"),
                "content_features": r.headers.get("contentFeatures.dlna.org"),
                "content_type": r.headers.get("Content-Type"),
            }


async def main():
    port, page, titles = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    searches = {}
    for target in ("ssdp:all", "upnp:rootdevice", MEDIA_SERVER, CDS):
        searches[target] = await search(port, target)
    locations = {f["location"] for answers in searches.values() for f in answers}
    if not searches[MEDIA_SERVER]:
        raise SystemExit(f"no MediaServer answered on port {port}: {searches}")
    location = searches[MEDIA_SERVER][0]["location"]
    factory = UpnpFactory(AiohttpRequester(timeout=30), non_strict=False)
    device = await factory.async_create_device(location)
    cds = device.service(CDS)
    cm = device.service(CM)
    update = await cds.action("GetSystemUpdateID").async_call()
    proto = await cm.action("GetProtocolInfo").async_call()
    objects = await browse_all(cds, page)
    fetched = {}
    for o in objects:
        if o["title"] in titles and o["res"]:
            fetched[o["title"]] = await fetch(o["res"][0]["url"])
    print(json.dumps({
        "searches": searches, "locations": sorted(locations),
        "friendly_name": device.friendly_name, "udn": device.udn,
        "device_type": device.device_type, "update_id": update["Id"],
        "source_protocol_info": proto["Source"], "objects": objects, "fetched": fetched,
    }))


asyncio.run(asyncio.wait_for(main(), 180))
