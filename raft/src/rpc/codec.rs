//! The tonic codecs of the peer RPC: serde values as JSON (`CALL_PATH`), and snapshot chunks with
//! their bytes raw (`SNAPSHOT_PATH`).

use std::marker::PhantomData;

use openraft::raft::InstallSnapshotRequest;
use prost::bytes::{Buf, BufMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use super::PeerResponse;
use crate::types::TypeConfig;

#[derive(Debug)]
pub struct JsonCodec<E, D>(PhantomData<(E, D)>);

impl<E, D> Default for JsonCodec<E, D> {
    fn default() -> Self {
        JsonCodec(PhantomData)
    }
}

#[derive(Debug)]
pub struct JsonEncoder<E>(PhantomData<E>);

#[derive(Debug)]
pub struct JsonDecoder<D>(PhantomData<D>);

impl<E, D> Codec for JsonCodec<E, D>
where
    E: Serialize + Send + 'static,
    D: DeserializeOwned + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = JsonEncoder<E>;
    type Decoder = JsonDecoder<D>;

    fn encoder(&mut self) -> JsonEncoder<E> {
        JsonEncoder(PhantomData)
    }

    fn decoder(&mut self) -> JsonDecoder<D> {
        JsonDecoder(PhantomData)
    }
}

impl<E: Serialize> Encoder for JsonEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        serde_json::to_writer(dst.writer(), &item)
            .map_err(|e| Status::internal(format!("encoding a peer message: {e}")))
    }
}

impl<D: DeserializeOwned> Decoder for JsonDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("decoding a peer message: {e}")))
    }
}

/// A chunk of a Raft snapshot as it travels on `SNAPSHOT_PATH`: the request's JSON with its
/// `data` taken out, then the data itself, raw. As JSON (`CALL_PATH`) a `Vec<u8>` is an array of
/// decimal numbers, about 4 bytes a byte, written and parsed number by number at both ends.
///
/// ```text
/// <4 bytes: length of the header, big-endian> <header: the request's JSON, "data":[]> <data>
/// ```
#[derive(Debug)]
pub struct RawChunk(pub InstallSnapshotRequest<TypeConfig>);

/// Why bytes on `SNAPSHOT_PATH` are not a chunk.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("a snapshot chunk of {0} bytes is too short for its header's length")]
    Short(usize),
    #[error("a snapshot chunk's header announces {header} bytes, the message holds {held}")]
    HeaderPastEnd { header: usize, held: usize },
    #[error("a snapshot chunk's header does not read: {0}")]
    Header(String),
    #[error("a snapshot chunk's header carries data of its own ({0} bytes)")]
    DataInHeader(usize),
}

const LEN_BYTES: usize = 4;

impl RawChunk {
    /// The chunk's bytes on the wire.
    pub fn write(mut self, dst: &mut impl BufMut) -> Result<(), serde_json::Error> {
        let data = std::mem::take(&mut self.0.data);
        let header = serde_json::to_vec(&self.0)?;
        let len = u32::try_from(header.len()).map_err(serde::ser::Error::custom)?;
        dst.put_u32(len);
        dst.put_slice(&header);
        dst.put_slice(&data);
        Ok(())
    }

    /// Reads a chunk written by `write`.
    pub fn read(bytes: &[u8]) -> Result<RawChunk, ChunkError> {
        let (len, rest) =
            bytes.split_first_chunk::<LEN_BYTES>().ok_or(ChunkError::Short(bytes.len()))?;
        let header = u32::from_be_bytes(*len) as usize;
        if header > rest.len() {
            return Err(ChunkError::HeaderPastEnd { header, held: rest.len() });
        }
        let (header, data) = rest.split_at(header);
        let mut request: InstallSnapshotRequest<TypeConfig> =
            serde_json::from_slice(header).map_err(|e| ChunkError::Header(e.to_string()))?;
        if !request.data.is_empty() {
            return Err(ChunkError::DataInHeader(request.data.len()));
        }
        request.data = data.to_vec();
        Ok(RawChunk(request))
    }
}

/// The codec of `SNAPSHOT_PATH`: a `RawChunk` one way, a `PeerResponse` as JSON the other.
/// `ChunkCodec<RawChunk, PeerResponse>` is the client's, `ChunkCodec<PeerResponse, RawChunk>`
/// the server's.
#[derive(Debug)]
pub struct ChunkCodec<E, D>(PhantomData<(E, D)>);

impl<E, D> Default for ChunkCodec<E, D> {
    fn default() -> Self {
        ChunkCodec(PhantomData)
    }
}

#[derive(Debug, Default)]
pub struct ChunkEncoder;

#[derive(Debug, Default)]
pub struct ChunkDecoder;

impl Codec for ChunkCodec<RawChunk, PeerResponse> {
    type Encode = RawChunk;
    type Decode = PeerResponse;
    type Encoder = ChunkEncoder;
    type Decoder = JsonDecoder<PeerResponse>;

    fn encoder(&mut self) -> ChunkEncoder {
        ChunkEncoder
    }

    fn decoder(&mut self) -> JsonDecoder<PeerResponse> {
        JsonDecoder(PhantomData)
    }
}

impl Codec for ChunkCodec<PeerResponse, RawChunk> {
    type Encode = PeerResponse;
    type Decode = RawChunk;
    type Encoder = JsonEncoder<PeerResponse>;
    type Decoder = ChunkDecoder;

    fn encoder(&mut self) -> JsonEncoder<PeerResponse> {
        JsonEncoder(PhantomData)
    }

    fn decoder(&mut self) -> ChunkDecoder {
        ChunkDecoder
    }
}

impl Encoder for ChunkEncoder {
    type Item = RawChunk;
    type Error = Status;

    fn encode(&mut self, item: RawChunk, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.write(dst).map_err(|e| Status::internal(format!("encoding a snapshot chunk: {e}")))
    }
}

impl Decoder for ChunkDecoder {
    type Item = RawChunk;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<RawChunk>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        RawChunk::read(&bytes).map(Some).map_err(|e| Status::invalid_argument(e.to_string()))
    }
}
