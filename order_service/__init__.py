"""The order service: places orders, lists them, moves them through their statuses and
publishes `order.placed` and `order.status-changed`."""
