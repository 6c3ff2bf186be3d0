"""Who is calling: the Airflow UI's JWT (cookie ``_token`` or ``Authorization: Bearer``) validated by Airflow's own
auth manager. Airflow does not authenticate plugin apps itself, so every route here depends on this."""

from __future__ import annotations

from fastapi import HTTPException, Request

COOKIE = "_token"


async def current_user(request: Request):
    token = request.cookies.get(COOKIE)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    if not token:
        raise HTTPException(status_code=401, detail="log in to Airflow first (no Airflow session token)")
    from airflow.api_fastapi.app import get_auth_manager

    try:
        user = await get_auth_manager().get_user_from_token(token)
    except Exception as exc:  # noqa: BLE001 - any validation failure is a 401 to the caller
        raise HTTPException(status_code=401, detail="invalid or expired Airflow token: log in again") from exc
    if user is None:
        raise HTTPException(status_code=401, detail="invalid Airflow token")
    return user


def login_url(next_path: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_path)
