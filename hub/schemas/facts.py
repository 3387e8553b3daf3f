"""The routing facts' contract: which schema travels on each fact input topic, the RoutingFact kind
of each, and the one translation between an input's vocabulary and routing's (a ResidencePermit's
`basis` to a Newcomer's / RoutingInput's `residence_basis`). Pure: no I/O.
"""

from __future__ import annotations

from types import MappingProxyType

from hub.schemas import topics

MIGRI = "migri"  # the Finnish Immigration Service: the publisher id of residence permits, and its Kafka user

JOBSEEKER_STATUS = "JobseekerStatus"
RESIDENCE_PERMIT = "ResidencePermit"
SERVICE_NEEDS = "ServiceNeeds"
ROUTING_FACT = "RoutingFact"

# input topic -> the schema its records have
SCHEMA_OF_TOPIC = MappingProxyType({
    topics.JOBSEEKER_STATUS: JOBSEEKER_STATUS,
    topics.RESIDENCE_PERMITS: RESIDENCE_PERMIT,
    topics.SERVICE_NEEDS: SERVICE_NEEDS,
})

# input schema -> RoutingFact.kind
KIND_OF_SCHEMA = MappingProxyType({
    JOBSEEKER_STATUS: "jobseeker_status",
    RESIDENCE_PERMIT: "residence_permit",
    SERVICE_NEEDS: "service_needs",
})

# ResidencePermit.basis -> routing's residence_basis (hub.routing.model.RESIDENCE_BASES); a basis
# not named here has the same name in both
_BASIS_FOR_ROUTING = MappingProxyType({"eu_registration": "eu_citizen"})
PERMIT_BASES = ("work", "family", "study", "international_protection", "temporary_protection", "eu_registration", "other")


def routing_residence_basis(basis: str) -> str:
    """Routing's residence basis of a decoded ResidencePermit's `basis`: `eu_registration` (the
    registered right of residence of an EU citizen) is `eu_citizen`, every other basis keeps its
    name. Raises ValueError for a value that is not a ResidencePermit basis."""
    if basis not in PERMIT_BASES:
        raise ValueError(f"ResidencePermit.basis must be one of {', '.join(PERMIT_BASES)}")
    return _BASIS_FOR_ROUTING.get(basis, basis)
