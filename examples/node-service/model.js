'use strict';

// The business logic of the orders service: what a command does to an
// order and which events it emits. An order is kept as
// {"confirmed": false, "lines": {"a": 2}}, the representation oncecheck's
// orders model observes.

/** initialOrder is the state of an order no command has touched yet. */
function initialOrder() {
  return { confirmed: false, lines: {} };
}

/**
 * apply changes the order o (in place) by the command of type `type` with
 * the payload `body` ({sku, qty}), and returns the events it emits as
 * [{type, payload}], in the order the service publishes them.
 */
function apply(o, type, body) {
  if (!o.lines) {
    o.lines = {};
  }
  const p = body || {};
  switch (type) {
    case 'AddItem': {
      if (o.confirmed) {
        return [{ type: 'AddItemRejected', payload: { sku: p.sku } }];
      }
      const first = Object.keys(o.lines).length === 0;
      o.lines[p.sku] = (Object.hasOwn(o.lines, p.sku) ? o.lines[p.sku] : 0) + p.qty;
      const events = [{ type: 'ItemAdded', payload: { qty: o.lines[p.sku], sku: p.sku } }];
      if (first) {
        events.push({ type: 'FirstItemAdded', payload: { sku: p.sku } });
      }
      return events;
    }
    case 'RemoveItem':
      if (Object.hasOwn(o.lines, p.sku) && !o.confirmed) {
        delete o.lines[p.sku];
        return [{ type: 'ItemRemoved', payload: { sku: p.sku } }];
      }
      return [];
    case 'Confirm': {
      if (o.confirmed) {
        return [{ type: 'OrderRejected', payload: { reason: 'already confirmed' } }];
      }
      if (Object.keys(o.lines).length === 0) {
        return [{ type: 'OrderRejected', payload: { reason: 'empty' } }];
      }
      o.confirmed = true;
      const items = Object.values(o.lines).reduce((sum, qty) => sum + qty, 0);
      return [{ type: 'OrderConfirmed', payload: { items } }];
    }
    default:
      throw new Error(`unknown message type ${JSON.stringify(type)}`);
  }
}

module.exports = { apply, initialOrder };
