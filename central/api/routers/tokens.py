"""API tokens (admin): create and revoke. The token text is returned once, at creation."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from central.api.deps import Admin, Conn
from central.auth import AuthError, Role, create_token, revoke_token

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    role: Role
    enterprise: str | None = Field(default=None, min_length=1, max_length=200,
                                   description="required for, and only for, the enterprise role")
    label: str = Field(default="", max_length=200, description="who or what holds the token")


class TokenOut(BaseModel):
    id: int
    role: Role
    enterprise: str | None
    label: str
    token: str = Field(description="shown once: store it now")


@router.post("", response_model=TokenOut, status_code=status.HTTP_201_CREATED,
             summary="Create a token (admin)")
def create(body: TokenIn, conn: Conn, user: Admin) -> TokenOut:
    try:
        token, p = create_token(conn, body.role, enterprise=body.enterprise, label=body.label)
    except AuthError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return TokenOut(id=p.token_id, role=p.role, enterprise=p.enterprise, label=p.label,
                    token=token)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Revoke a token (admin)")
def revoke(token_id: int, conn: Conn, user: Admin) -> None:
    if not revoke_token(conn, token_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no active token with id {token_id}")
