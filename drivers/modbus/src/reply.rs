//! The requests a sorter driver sends and the checks on their replies.
//!
//! tokio-modbus frames the bytes, checks the CRC (RTU) or the transaction id (TCP) and that
//! the reply's function code is the request's. What the reply *says* is checked here, in
//! the words of the Modbus Application Protocol V1.1b3 (§6.2 read discrete inputs, §6.5
//! write single coil, §6.6 write single register): the bit count a read returns, the
//! address and value a write echoes. A reply that fails a check is a broken line, never a
//! wrong sorter state or a divert taken for done.

use std::fmt;

use tokio_modbus::{Request, Response};

use crate::map::{InputWindow, MAX_READ_INPUTS, Write};

/// One request of the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read discrete inputs (function `02`).
    ReadInputs(InputWindow),
    /// A write (function `05` or `06`).
    Write(Write),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadInputs(window) => write!(
                f,
                "read discrete inputs {} to {}",
                window.first,
                u32::from(window.first) + u32::from(window.count).max(1) - 1
            ),
            Self::Write(write) => write.fmt(f),
        }
    }
}

/// What a checked reply carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The inputs read, first input first, exactly as many as asked for.
    Inputs(Vec<bool>),
    /// The write was echoed as sent.
    Written,
}

/// A reply that does not answer its request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A read returned another number of bytes than `count` inputs take.
    #[error(
        "asked for {asked} discrete inputs, the reply carries {got} bits (expected {expected})"
    )]
    InputCount {
        /// Inputs asked for.
        asked: u16,
        /// Bits in the reply (whole bytes).
        got: usize,
        /// Bits `asked` inputs take in whole bytes.
        expected: usize,
    },
    /// A write echoed another address or value.
    #[error("{sent}: the echo says {echo}")]
    Echo {
        /// The write sent.
        sent: Write,
        /// The write echoed.
        echo: Write,
    },
    /// The reply answers another kind of request.
    #[error("{op}: answered with {response}")]
    Mismatch {
        /// The request.
        op: Op,
        /// The reply's function, as tokio-modbus names it.
        response: String,
    },
}

impl Op {
    /// The request on the wire.
    pub fn request(&self) -> Request<'static> {
        match *self {
            Self::ReadInputs(window) => Request::ReadDiscreteInputs(window.first, window.count),
            Self::Write(Write::Register { address, value }) => {
                Request::WriteSingleRegister(address, value)
            }
            Self::Write(Write::Coil { address, on }) => Request::WriteSingleCoil(address, on),
        }
    }

    /// Checks that `response` answers this request and returns what it carried.
    pub fn check(&self, response: Response) -> Result<Reply, ReplyError> {
        match (*self, response) {
            (Self::ReadInputs(window), Response::ReadDiscreteInputs(mut bits)) => {
                // The byte count is ceil(quantity / 8); the bits after the quantity in the
                // last byte are padding (§6.2).
                let expected = usize::from(window.count).div_ceil(8) * 8;
                if bits.len() != expected || window.count == 0 || window.count > MAX_READ_INPUTS {
                    return Err(ReplyError::InputCount {
                        asked: window.count,
                        got: bits.len(),
                        expected,
                    });
                }
                bits.truncate(usize::from(window.count));
                Ok(Reply::Inputs(bits))
            }
            (
                Self::Write(sent @ Write::Register { .. }),
                Response::WriteSingleRegister(address, value),
            ) => echoed(sent, Write::Register { address, value }),
            (Self::Write(sent @ Write::Coil { .. }), Response::WriteSingleCoil(address, on)) => {
                echoed(sent, Write::Coil { address, on })
            }
            (op, other) => Err(ReplyError::Mismatch {
                op,
                response: format!("{:?}", other.function_code()),
            }),
        }
    }
}

fn echoed(sent: Write, echo: Write) -> Result<Reply, ReplyError> {
    if sent == echo {
        Ok(Reply::Written)
    } else {
        Err(ReplyError::Echo { sent, echo })
    }
}

/// A request as the driver's [`Op`], when it is one of the driver's kinds.
pub fn op_of(request: &Request<'_>) -> Option<Op> {
    match *request {
        Request::ReadDiscreteInputs(first, count) => {
            Some(Op::ReadInputs(InputWindow { first, count }))
        }
        Request::WriteSingleRegister(address, value) => {
            Some(Op::Write(Write::Register { address, value }))
        }
        Request::WriteSingleCoil(address, on) => Some(Op::Write(Write::Coil { address, on })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(first: u16, count: u16) -> Op {
        Op::ReadInputs(InputWindow { first, count })
    }

    fn reg(address: u16, value: u16) -> Op {
        Op::Write(Write::Register { address, value })
    }

    fn coil(address: u16, on: bool) -> Op {
        Op::Write(Write::Coil { address, on })
    }

    #[test]
    fn a_reply_is_accepted_only_when_it_answers_its_request() {
        let bits = |n: usize| vec![true; n];
        // request, response, accepted as
        let cases: Vec<(Op, Response, Option<Reply>)> = vec![
            (
                window(0, 9),
                Response::ReadDiscreteInputs(bits(16)),
                Some(Reply::Inputs(bits(9))),
            ),
            (
                window(0, 8),
                Response::ReadDiscreteInputs(bits(8)),
                Some(Reply::Inputs(bits(8))),
            ),
            (
                window(5, 1),
                Response::ReadDiscreteInputs(bits(8)),
                Some(Reply::Inputs(bits(1))),
            ),
            (window(0, 9), Response::ReadDiscreteInputs(bits(8)), None), // a byte short
            (window(0, 9), Response::ReadDiscreteInputs(bits(24)), None), // a byte too many
            (window(0, 0), Response::ReadDiscreteInputs(bits(0)), None),
            (
                window(0, 2001),
                Response::ReadDiscreteInputs(bits(2008)),
                None,
            ),
            (window(0, 8), Response::ReadCoils(bits(8)), None),
            (
                reg(100, 3),
                Response::WriteSingleRegister(100, 3),
                Some(Reply::Written),
            ),
            (reg(100, 3), Response::WriteSingleRegister(100, 4), None),
            (reg(100, 3), Response::WriteSingleRegister(101, 3), None),
            (reg(100, 3), Response::WriteSingleCoil(100, true), None),
            (
                coil(16, true),
                Response::WriteSingleCoil(16, true),
                Some(Reply::Written),
            ),
            (
                coil(16, false),
                Response::WriteSingleCoil(16, false),
                Some(Reply::Written),
            ),
            (coil(16, true), Response::WriteSingleCoil(16, false), None),
            (coil(16, true), Response::WriteSingleCoil(17, true), None),
            (coil(16, true), Response::WriteMultipleCoils(16, 1), None),
        ];
        for (n, (op, response, expected)) in cases.into_iter().enumerate() {
            let got = op.check(response.clone());
            assert_eq!(
                got.clone().ok(),
                expected,
                "case {n}: {op} / {response:?}: {got:?}"
            );
        }
    }

    #[test]
    fn a_failed_check_says_what_was_sent_and_what_came_back() {
        let err = reg(100, 3)
            .check(Response::WriteSingleRegister(100, 4))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "write holding register 100 = 3: the echo says write holding register 100 = 4"
        );
        let err = window(10, 3)
            .check(Response::ReadDiscreteInputs(vec![false; 16]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "asked for 3 discrete inputs, the reply carries 16 bits (expected 8)"
        );
        let err = coil(1, true)
            .check(Response::ReadCoils(vec![]))
            .unwrap_err();
        assert_eq!(err.to_string(), "write coil 1 on: answered with ReadCoils");
        assert_eq!(window(10, 3).to_string(), "read discrete inputs 10 to 12");
    }

    #[test]
    fn ops_and_requests_convert_both_ways() {
        for op in [window(3, 4), reg(1, 2), coil(9, true), coil(9, false)] {
            let request = op.request();
            assert_eq!(op_of(&request), Some(op));
        }
        assert_eq!(op_of(&Request::ReadCoils(0, 1)), None);
    }
}
