//! The codec of the gateway's own services: prost encoding with a small per-call buffer.
//!
//! tonic allocates the encode buffer of every call up front (8 KiB by default) and keeps it for
//! the call's life. A watch stream is a call that lives for minutes while sending a few small
//! messages, and a gateway holds thousands of them, so the default would be most of an idle
//! subscriber's memory. Buffers still grow in steps of this size for larger messages.

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size (and growth step) of a call's encode and decode buffers.
const BUFFER_SIZE: usize = 1024;
/// Encoded bytes gathered before yielding to the transport (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// `ProstCodec` with [`BUFFER_SIZE`] buffers; the generated servers and clients of
/// `ackgateway.v1` use it (`codec_path` in `build.rs`).
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        SmallBufferCodec(std::marker::PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
