//! openraft's network for the metadata quorum: raft RPCs to the other voters over the
//! internal RPC ([`super::rpc`]), with openraft's per-call deadlines.
//!
//! Owns: the mapping between openraft's RPC calls/errors and frames. Must never: retry on its
//! own (openraft's replication does), or wait without the deadline openraft gives.

use std::sync::Arc;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};

use super::rpc::{Pool, Request, Response};
use super::MetadataRaft;

pub struct NetworkFactory {
    pub pool: Arc<Pool>,
}

pub struct PeerClient {
    pool: Arc<Pool>,
    target: u64,
    address: String,
}

impl RaftNetworkFactory<MetadataRaft> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient { pool: self.pool.clone(), target, address: node.addr.clone() }
    }
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl PeerClient {
    async fn call(&self, request: Request, option: &RPCOption) -> Result<Response, std::io::Error> {
        self.pool.call(&self.address, &request, option.hard_ttl()).await
    }

    fn failed<E: std::error::Error>(e: std::io::Error) -> RPCError<u64, BasicNode, E> {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            _ => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn unexpected<E: std::error::Error>(response: Response) -> RPCError<u64, BasicNode, E> {
        let e = std::io::Error::other(format!("unexpected response {response:?}"));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<MetadataRaft> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetadataRaft>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        match self.call(Request::AppendEntries(rpc), &option).await.map_err(Self::failed)? {
            Response::AppendEntries(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetadataRaft>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        match self.call(Request::InstallSnapshot(rpc), &option).await.map_err(Self::failed)? {
            Response::InstallSnapshot(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>> {
        match self.call(Request::Vote(rpc), &option).await.map_err(Self::failed)? {
            Response::Vote(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }
}
