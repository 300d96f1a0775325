"""The printed schema is exactly the founding contract's section 4, plus the Subscription type
(real-time order tracking, orders issue; documented in graphql_gateway/README.md) and the
identity additions of issue 13 (verified email, sessions, password reset and change)."""

from __future__ import annotations

from typing import Any

import graphql
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
)

from graphql_gateway.schema import schema

# The founding design's section 4, verbatim (plus the DateTime scalar it names).
CONTRACT_SDL = """
scalar DateTime

enum Preference { promotions order_updates recommendations }
enum OrderStatus { Placed Shipped Delivered Cancelled }
enum NotificationType { promotion order_update recommendation alert other }

input ProductInput { productId: ID!  title: String!  category: String!  price: Float }
type Product { productId: ID!  title: String!  category: String!  price: Float }
type PurchaseHistory { orderId: ID!  products: [Product!]!  purchaseDate: DateTime! }
type User {
  id: ID!  name: String!  email: String!  preferences: [Preference!]!
  order_status: String!            # status of the latest order, "none" before any
  orders: [Product!]!              # products of the latest order
  purchase_history: [PurchaseHistory!]!
}
type Order { id: ID!  userId: ID!  products: [Product!]!  status: OrderStatus!  createdAt: DateTime!  updatedAt: DateTime! }
type Notification { id: ID!  userId: ID!  type: NotificationType!  content: String!  sentAt: DateTime!  read: Boolean! }
type AuthPayload { token: String!  user: User! }

type Query {
  getUserDetails: User!
  getUserNotifications(unreadOnly: Boolean = true): [Notification!]!   # newest first
  orders: [Order!]!                                                    # the caller's, newest first
  recommendations: [Product!]!                                         # latest computed for the caller
  productRecommendation: String!                                       # starts the async flow
}
type Mutation {
  registerUser(name: String!, email: String!, password: String!, preferences: [Preference!]): AuthPayload!
  login(email: String!, password: String!): AuthPayload!
  updateUserPreferences(preferences: [Preference!]!): User!
  placeOrder(products: [ProductInput!]!): Order!
  updateOrderStatus(orderId: ID!, order_status: OrderStatus!): Order!
  taskSchedular: String!                                               # subscribe to promotions
  cancelTaskSchedular: String!                                         # unsubscribe
  markNotificationRead(id: ID!): Notification!
}
"""  # noqa: E501

# Issue 13's additions, with its exact names.
IDENTITY_SDL = """
extend type User { emailVerified: Boolean! }
extend type AuthPayload { refreshToken: String! }
extend type Mutation {
  refreshSession(refreshToken: String!): AuthPayload!
  logout: Boolean!
  verifyEmail(token: String!): User!
  resendVerification: String!
  requestPasswordReset(email: String!): String!
  resetPassword(token: String!, newPassword: String!): AuthPayload!
  changePassword(currentPassword: String!, newPassword: String!): AuthPayload!
}
"""

# The addition to section 4 (over WebSocket, graphql-transport-ws).
SUBSCRIPTION_SDL = """
type Subscription {
  orderUpdates: Order!                                                 # the caller's orders
  notificationAdded: Notification!                                     # the caller's new ones
}
"""


# Issue 15 (orders and data): the public catalog, quantities, totals, idempotency keys and the
# paged purchase history.
# ProductInput's title and category became optional (ignored: the catalog's are stored), so
# every request valid under the contract is still valid.
ISSUE_15_CHANGES = {
    "input ProductInput { productId: ID!  title: String!  category: String!  price: Float }": (
        "input ProductInput { productId: ID!  quantity: Int = 1  title: String  category: String"
        "  price: Float }"
    ),
    "type Product { productId: ID!  title: String!  category: String!  price: Float }": (
        "type Product { productId: ID!  title: String!  category: String!  price: Float"
        "  quantity: Int! }"
    ),
    "products: [Product!]!  status: OrderStatus!": (
        "products: [Product!]!  total: Float  status: OrderStatus!"
    ),
    "productRecommendation: String!                                       # starts the async flow": (  # noqa: E501
        "productRecommendation: String!\n"
        "  products(category: String = null, search: String = null, first: Int = 20,"
        " after: String = null): ProductPage!\n"
        "  product(productId: ID!): CatalogProduct"
    ),
    "  purchase_history: [PurchaseHistory!]!": (
        "  purchase_history(first: Int = 20): [PurchaseHistory!]!"
    ),
    "placeOrder(products: [ProductInput!]!): Order!": (
        "placeOrder(products: [ProductInput!]!, idempotencyKey: String = null): Order!"
    ),
}
ISSUE_15_SDL = """
type Rating { rate: Float!  count: Int! }
type CatalogProduct {
  productId: ID!  title: String!  category: String!  price: Float!  description: String!
  image: String!  rating: Rating!
}
type ProductPage { items: [CatalogProduct!]!  endCursor: String  hasNextPage: Boolean! }
"""


def current_sdl() -> str:
    """The contract with the changes later issues made to it."""
    sdl = CONTRACT_SDL
    for old, new in ISSUE_15_CHANGES.items():
        assert old in sdl, old
        sdl = sdl.replace(old, new)
    return sdl + ISSUE_15_SDL


def default_of(value: GraphQLArgument | GraphQLInputField) -> str | None:
    """The default as written in the SDL (both schemas are built from SDL), or None."""
    node = value.ast_node
    if node is None or node.default_value is None:
        return None
    return graphql.print_ast(node.default_value)


def shape(named: GraphQLNamedType) -> Any:
    """What a type promises to clients, descriptions left out."""
    if isinstance(named, GraphQLEnumType):
        return ("enum", list(named.values))
    if isinstance(named, GraphQLInputObjectType):
        return (
            "input",
            {name: (str(f.type), default_of(f)) for name, f in named.fields.items()},
        )
    if isinstance(named, GraphQLObjectType):
        return (
            "object",
            {
                name: (
                    str(f.type),
                    {arg: (str(a.type), default_of(a)) for arg, a in f.args.items()},
                )
                for name, f in named.fields.items()
            },
        )
    if isinstance(named, GraphQLScalarType):
        return ("scalar",)
    raise AssertionError(f"unexpected kind of type: {named!r}")


def public_types(built: GraphQLSchema) -> dict[str, Any]:
    return {
        name: shape(named)
        for name, named in built.type_map.items()
        if not name.startswith("__") and name not in graphql.specified_scalar_types
    }


def test_printed_schema_is_the_contract_plus_subscriptions_and_later_issues() -> None:
    ours = graphql.build_schema(schema.as_str())
    contract = graphql.build_schema(current_sdl() + SUBSCRIPTION_SDL + IDENTITY_SDL)
    assert public_types(ours) == public_types(contract)


def test_additions_keep_every_contract_request_valid() -> None:
    ours = public_types(graphql.build_schema(schema.as_str()))
    contract = public_types(graphql.build_schema(CONTRACT_SDL + IDENTITY_SDL))
    assert set(ours) - set(contract) == {"Subscription", "Rating", "CatalogProduct", "ProductPage"}
    for name, described in contract.items():
        kind = described[0]
        if kind not in ("object", "input"):
            assert ours[name] == described
            continue
        for field, (type_, detail) in described[1].items():
            our_type, our_detail = ours[name][1][field]
            if kind == "input":
                # An input field may only get looser (String! -> String).
                assert our_type in (type_, type_.rstrip("!")) and our_detail == detail
            else:
                # Every argument of the contract is still there, as it was.
                assert our_type == type_
                assert {arg: our_detail[arg] for arg in detail} == detail


def test_contract_field_order_is_kept() -> None:
    ours = graphql.build_schema(schema.as_str())
    contract = graphql.build_schema(current_sdl() + SUBSCRIPTION_SDL + IDENTITY_SDL)
    for root in ("Query", "Mutation", "Subscription", "User"):
        ours_type, contract_type = ours.get_type(root), contract.get_type(root)
        assert isinstance(ours_type, GraphQLObjectType)
        assert isinstance(contract_type, GraphQLObjectType)
        assert list(ours_type.fields) == list(contract_type.fields)


def test_names_are_not_camel_cased() -> None:
    printed = schema.as_str()
    for name in ("order_status", "purchase_history", "unreadOnly", "taskSchedular"):
        assert name in printed
    assert "orderStatus" not in printed
    assert "purchaseHistory:" not in printed
