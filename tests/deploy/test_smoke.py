async def test_client_roundtrip(api):
    org = await api.org()
    c = api.client(await api.token(org, "system/Client.cruds"))
    r = await c.post("/v1/clients", json={"display_name": "Ana"})
    assert r.status_code == 201, r.text
    r2 = await c.get(f"/v1/clients/{r.json()['id']}")
    assert r2.status_code == 200
    assert r2.headers["etag"] == 'W/"1"'
