"""Monitoring API (topics, consumer groups, dead letters): its routes arrive in a later issue."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["monitoring"])
