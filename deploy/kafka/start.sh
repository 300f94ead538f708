#!/bin/bash
# The compose stack's Kafka (docker-compose.yml, service kafka): one KRaft node with SASL on
# every listener and ACLs enforced. Clients authenticate with SCRAM-SHA-512 (users and ACLs
# are created by the kafka-init service: deploy/kafka/init.sh); the broker talks to its own
# controller with PLAIN. Nobody is allowed anything without an ACL, except the two super
# users admin (kafka-init, the healthcheck) and controller. Passwords come from the
# environment and stay inside the container.
set -euo pipefail
: "${CLUSTER_ID:?}" "${KAFKA_ADMIN_PASSWORD:?}" "${KAFKA_CONTROLLER_PASSWORD:?}"
CONF=/tmp/server.properties
cat > "$CONF" <<EOF
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@kafka:9093
listeners=BROKER://:9092,CONTROLLER://:9093,HOST://:29092
advertised.listeners=BROKER://kafka:9092,HOST://127.0.0.1:29092
listener.security.protocol.map=BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT,HOST:SASL_PLAINTEXT
inter.broker.listener.name=BROKER
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="${KAFKA_CONTROLLER_PASSWORD}" user_controller="${KAFKA_CONTROLLER_PASSWORD}";
listener.name.broker.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
listener.name.host.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:controller
allow.everyone.if.no.acl.found=false
log.dirs=/var/lib/kafka/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
# The admin's SCRAM credential must exist before the broker authenticates to itself:
# written into the metadata log when the storage is formatted (once; later starts keep it).
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$CLUSTER_ID" \
  --config "$CONF" --add-scram "SCRAM-SHA-512=[name=admin,password=${KAFKA_ADMIN_PASSWORD}]"
# for the healthcheck (kafka-broker-api-versions.sh --command-config)
cat > /tmp/admin.properties <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
EOF
exec /opt/kafka/bin/kafka-server-start.sh "$CONF"
