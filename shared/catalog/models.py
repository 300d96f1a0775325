"""The product catalog's shapes (fakestoreapi's `/products`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Rating(BaseModel):
    """The average rating and how many ratings it averages."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rate: float = Field(default=0.0, ge=0)
    count: int = Field(default=0, ge=0)


class Product(BaseModel):
    """A catalog product; `id` is kept as a string (order events carry `productId` strings)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    title: str = Field(min_length=1)
    price: float = Field(ge=0)
    description: str = ""
    category: str = Field(min_length=1)
    image: str = ""
    rating: Rating = Field(default_factory=Rating)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_string(cls, value: Any) -> str:
        return str(value)

    def as_line(self) -> dict[str, Any]:
        """The public contract's product shape: {productId, title, category, price}."""
        return {
            "productId": self.id,
            "title": self.title,
            "category": self.category,
            "price": self.price,
        }
