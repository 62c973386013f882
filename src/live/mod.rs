//! What keeps every open tab showing the right number, live: the websocket endpoint ([`ws`]),
//! this node's tabs and the visitor timeline ([`hub`]), the fan-out between nodes ([`bus`]:
//! in-process or RabbitMQ), and the messages on the wire ([`protocol`]).

pub mod bus;
pub mod hub;
pub mod protocol;
pub mod ws;
