//! CreateAcls, DescribeAcls and DeleteAcls (v1–3; KIP-290 pattern types), with Kafka's
//! semantics: every creation and filter is validated on its own (INVALID_REQUEST with the
//! reason); the ACLs live in the cluster metadata ([`crate::security::image`]), changed by one
//! controller command per request. Without an authorizer (`authorizer.class.name` unset) each
//! answers SECURITY_DISABLED, as Kafka does.
//!
//! Owns: turning these requests into security commands and answers. Must never: change ACLs
//! other than through [`controller::submit`].

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};

use crate::controller;
use crate::handlers::{codes, str_bytes};
use crate::metadata_image::MetadataCommand;
use crate::security::acl::{AclBinding, AclFilter};
use crate::security::image::SecurityCommand;
use crate::shard_context::ShardContext;

const NO_AUTHORIZER: &str = "No Authorizer is configured.";

pub async fn create(ctx: &Rc<ShardContext>, request: CreateAclsRequest, _version: i16) -> CreateAclsResponse {
    let answer = |code: i16, message: Option<String>| {
        AclCreationResult::default().with_error_code(code).with_error_message(message.map(str_bytes))
    };
    if !ctx.config.security.authorizer.enabled {
        let results = request.creations.iter().map(|_| answer(codes::SECURITY_DISABLED, Some(NO_AUTHORIZER.into())));
        return CreateAclsResponse::default().with_results(results.collect());
    }
    let parsed: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| {
            AclBinding::from_wire(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let committed = if valid.is_empty() {
        Ok(())
    } else {
        controller::submit(MetadataCommand::Security(SecurityCommand::CreateAcls { acls: valid })).await
    };
    let results = parsed
        .into_iter()
        .map(|p| match (p, &committed) {
            (Err(reason), _) => answer(codes::INVALID_REQUEST, Some(reason)),
            (Ok(_), Ok(())) => answer(codes::NONE, None),
            (Ok(_), Err(e)) => answer(e.code, Some(e.message.clone())),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub async fn describe(ctx: &Rc<ShardContext>, request: DescribeAclsRequest, _version: i16) -> DescribeAclsResponse {
    let refused = |code: i16, message: String| {
        DescribeAclsResponse::default().with_error_code(code).with_error_message(Some(str_bytes(message)))
    };
    if !ctx.config.security.authorizer.enabled {
        return refused(codes::SECURITY_DISABLED, NO_AUTHORIZER.into());
    }
    let filter = match AclFilter::from_wire(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    ) {
        Ok(f) => f,
        Err(reason) => return refused(codes::INVALID_REQUEST, reason),
    };
    let image = ctx.image.borrow();
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in image.security.acls.iter().filter(|a| filter.matches(a)) {
        by_resource
            .entry((acl.resource_type.code(), acl.resource_name.clone(), acl.pattern_type.code()))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(acl.principal.clone()))
                    .with_host(str_bytes(acl.host.clone()))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern_type)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_error_code(codes::NONE).with_resources(resources)
}

pub async fn delete(ctx: &Rc<ShardContext>, request: DeleteAclsRequest, _version: i16) -> DeleteAclsResponse {
    let failed = |code: i16, message: String| {
        DeleteAclsFilterResult::default().with_error_code(code).with_error_message(Some(str_bytes(message)))
    };
    if !ctx.config.security.authorizer.enabled {
        let results = request.filters.iter().map(|_| failed(codes::SECURITY_DISABLED, NO_AUTHORIZER.into()));
        return DeleteAclsResponse::default().with_filter_results(results.collect());
    }
    // Each filter's matches, from this node's image; then one command removes them all.
    let matches: Vec<Result<Vec<AclBinding>, String>> = {
        let image = ctx.image.borrow();
        request
            .filters
            .iter()
            .map(|f| {
                let filter = AclFilter::from_wire(
                    f.resource_type_filter,
                    f.resource_name_filter.as_deref(),
                    f.pattern_type_filter,
                    f.principal_filter.as_deref(),
                    f.host_filter.as_deref(),
                    f.operation,
                    f.permission_type,
                )?;
                Ok(image.security.acls.iter().filter(|a| filter.matches(a)).cloned().collect())
            })
            .collect()
    };
    let mut doomed: Vec<AclBinding> = matches.iter().filter_map(|m| m.as_ref().ok()).flatten().cloned().collect();
    doomed.sort();
    doomed.dedup();
    let committed = if doomed.is_empty() {
        Ok(())
    } else {
        controller::submit(MetadataCommand::Security(SecurityCommand::DeleteAcls { acls: doomed })).await
    };
    let results = matches
        .into_iter()
        .map(|m| match (m, &committed) {
            (Err(reason), _) => failed(codes::INVALID_REQUEST, reason),
            (Ok(_), Err(e)) => failed(e.code, e.message.clone()),
            (Ok(acls), Ok(())) => DeleteAclsFilterResult::default().with_error_code(codes::NONE).with_matching_acls(
                acls.into_iter()
                    .map(|a| {
                        DeleteAclsMatchingAcl::default()
                            .with_error_code(codes::NONE)
                            .with_resource_type(a.resource_type.code())
                            .with_resource_name(str_bytes(a.resource_name))
                            .with_pattern_type(a.pattern_type.code())
                            .with_principal(str_bytes(a.principal))
                            .with_host(str_bytes(a.host))
                            .with_operation(a.operation.code())
                            .with_permission_type(a.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
