"""
Tests for L{tools.devnode}: the pure parts of the dev Cassandra node tool.

No Cassandra node is started here; processes are stood in for by short
Python sleepers whose command lines look like a node's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from tools import devnode
from tools.devnode import DevNodeError, NodeSettings

#: The public instance fields of org.apache.cassandra.config.Config in
#: cassandra-all 5.0.9 (javap), i.e. the keys its cassandra.yaml accepts.
CASSANDRA_50_CONFIG_FIELDS = frozenset(
    """
    allocate_tokens_for_keyspace
    allocate_tokens_for_local_replication_factor allow_extra_insecure_udfs
    allow_filtering_enabled allow_insecure_udfs alter_table_enabled
    audit_logging_options auth_cache_warming_enabled
    auth_read_consistency_level auth_write_consistency_level authenticator
    authorizer auto_bootstrap auto_hints_cleanup_enabled
    auto_optimise_full_repair_streams auto_optimise_inc_repair_streams
    auto_optimise_preview_repair_streams auto_repair auto_snapshot
    auto_snapshot_ttl autocompaction_on_startup_enabled
    automatic_sstable_upgrade available_processors back_pressure_enabled
    back_pressure_strategy batch_size_fail_threshold
    batch_size_warn_threshold batchlog_endpoint_strategy
    batchlog_replay_throttle block_for_peers_in_remote_dcs
    block_for_peers_timeout_in_secs broadcast_address broadcast_rpc_address
    buffer_pool_use_heap_if_exhausted cache_load_timeout
    cas_contention_timeout cdc_block_writes cdc_enabled
    cdc_free_space_check_interval cdc_on_repair_enabled cdc_raw_directory
    cdc_total_space check_for_duplicate_rows_during_compaction
    check_for_duplicate_rows_during_reads cidr_authorizer
    client_encryption_options client_error_reporting_exclusions
    client_request_size_metrics_enabled cluster_name
    collection_size_fail_threshold collection_size_warn_threshold
    column_index_cache_size column_index_size
    column_value_size_fail_threshold column_value_size_warn_threshold
    columns_per_table_fail_threshold columns_per_table_warn_threshold
    commit_failure_policy commitlog_compression commitlog_directory
    commitlog_disk_access_mode commitlog_max_compression_buffers_in_pool
    commitlog_segment_size commitlog_sync commitlog_sync_group_window
    commitlog_sync_period commitlog_total_space compact_tables_enabled
    compaction_throughput compressed_read_ahead_buffer_size
    concurrent_compactors concurrent_counter_writes
    concurrent_index_builders concurrent_materialized_view_builders
    concurrent_materialized_view_writes concurrent_merkle_tree_requests
    concurrent_reads concurrent_validations concurrent_writes
    consecutive_message_errors_threshold
    coordinator_read_size_fail_threshold
    coordinator_read_size_warn_threshold corrupted_tombstone_strategy
    counter_cache_keys_to_save counter_cache_save_period counter_cache_size
    counter_write_request_timeout cql_start_time
    credentials_cache_active_update credentials_cache_max_entries
    credentials_update_interval credentials_validity crypto_provider
    data_disk_usage_max_disk_size data_disk_usage_percentage_fail_threshold
    data_disk_usage_percentage_warn_threshold data_file_directories
    default_compaction default_keyspace_rf default_secondary_index
    default_secondary_index_enabled denylist_consistency_level
    denylist_initial_load_retry denylist_max_keys_per_table
    denylist_max_keys_total denylist_range_reads_enabled
    denylist_reads_enabled denylist_refresh denylist_writes_enabled
    diagnostic_events_enabled disk_access_mode disk_failure_policy
    disk_optimization_estimate_percentile
    disk_optimization_page_cross_chance disk_optimization_strategy
    drop_compact_storage_enabled drop_keyspace_enabled
    drop_truncate_table_enabled dump_heap_on_uncaught_exception
    dynamic_data_masking_enabled dynamic_snitch
    dynamic_snitch_badness_threshold dynamic_snitch_reset_interval
    dynamic_snitch_update_interval endpoint_snitch
    enforce_native_deadline_for_hints
    entire_sstable_inter_dc_stream_throughput_outbound
    entire_sstable_stream_throughput_outbound failure_detector
    fields_per_udt_fail_threshold fields_per_udt_warn_threshold
    file_cache_enabled file_cache_round_up file_cache_size flush_compression
    force_new_prepared_statement_behaviour
    force_optimized_index_status_format full_query_logging_options
    gc_log_threshold gc_warn_threshold group_by_enabled heap_dump_path
    hint_window_persistent_enabled hinted_handoff_disabled_datacenters
    hinted_handoff_enabled hinted_handoff_throttle hints_compression
    hints_directory hints_flush_period ideal_consistency_level
    in_select_cartesian_product_fail_threshold
    in_select_cartesian_product_warn_threshold incremental_backups
    index_summary_capacity index_summary_resize_interval
    initial_range_tombstone_list_allocation_size initial_token
    inter_dc_stream_throughput_outbound inter_dc_tcp_nodelay
    internode_application_receive_queue_capacity
    internode_application_receive_queue_reserve_endpoint_capacity
    internode_application_receive_queue_reserve_global_capacity
    internode_application_send_queue_capacity
    internode_application_send_queue_reserve_endpoint_capacity
    internode_application_send_queue_reserve_global_capacity
    internode_authenticator internode_compression
    internode_error_reporting_exclusions internode_max_message_size
    internode_socket_receive_buffer_size internode_socket_send_buffer_size
    internode_streaming_tcp_user_timeout internode_tcp_connect_timeout
    internode_tcp_user_timeout internode_timeout
    intersect_filtering_query_enabled intersect_filtering_query_warned
    invalid_legacy_protocol_magic_no_spam_enabled
    items_per_collection_fail_threshold items_per_collection_warn_threshold
    key_cache_invalidate_after_sstable_deletion key_cache_keys_to_save
    key_cache_migrate_during_compaction key_cache_save_period key_cache_size
    keyspaces_fail_threshold keyspaces_warn_threshold listen_address
    listen_interface listen_interface_prefer_ipv6
    listen_on_broadcast_address local_read_size_fail_threshold
    local_read_size_warn_threshold local_system_data_file_directory
    log_out_of_token_range_requests materialized_views_enabled
    materialized_views_on_repair_enabled
    materialized_views_per_table_fail_threshold
    materialized_views_per_table_warn_threshold
    max_concurrent_automatic_sstable_upgrades max_hint_window
    max_hints_delivery_threads max_hints_file_size max_hints_size_per_host
    max_mutation_size max_space_usable_for_compactions_in_percentage
    max_streaming_retries max_top_size_partition_count
    max_top_tombstone_partition_count max_value_size
    maximum_replication_factor_fail_threshold
    maximum_replication_factor_warn_threshold
    maximum_timestamp_fail_threshold maximum_timestamp_warn_threshold
    memtable memtable_allocation_type memtable_cleanup_threshold
    memtable_flush_writers memtable_heap_space memtable_offheap_space
    min_free_space_per_drive min_tracked_partition_size
    min_tracked_partition_tombstone_count
    minimum_replication_factor_fail_threshold
    minimum_replication_factor_warn_threshold
    minimum_timestamp_fail_threshold minimum_timestamp_warn_threshold
    native_transport_allow_older_protocols
    native_transport_flush_in_batches_legacy native_transport_idle_timeout
    native_transport_max_auth_threads
    native_transport_max_backoff_on_queue_overload
    native_transport_max_concurrent_connections
    native_transport_max_concurrent_connections_per_ip
    native_transport_max_frame_size native_transport_max_message_size
    native_transport_max_request_data_in_flight
    native_transport_max_request_data_in_flight_per_ip
    native_transport_max_requests_per_second native_transport_max_threads
    native_transport_min_backoff_on_queue_overload native_transport_port
    native_transport_port_ssl native_transport_queue_max_item_age_threshold
    native_transport_rate_limiting_enabled
    native_transport_receive_queue_capacity
    native_transport_throw_on_overload native_transport_timeout
    network_authorizer networking_cache_size
    non_partition_restricted_index_query_enabled num_tokens
    otc_backlog_expiration_interval_ms
    otc_coalescing_enough_coalesced_messages otc_coalescing_strategy
    otc_coalescing_window_us page_size_fail_threshold
    page_size_warn_threshold partition_denylist_enabled
    partition_keys_in_select_fail_threshold
    partition_keys_in_select_warn_threshold partition_size_fail_threshold
    partition_size_warn_threshold partition_tombstones_fail_threshold
    partition_tombstones_warn_threshold partitioner paxos_cache_size
    paxos_contention_max_wait paxos_contention_min_delta
    paxos_contention_min_wait paxos_contention_wait_randomizer
    paxos_on_linearizability_violations paxos_purge_grace_period
    paxos_repair_enabled paxos_repair_parallelism paxos_repair_race_wait
    paxos_state_purging paxos_topology_repair_no_dc_checks
    paxos_topology_repair_strict_each_quorum paxos_variant
    periodic_commitlog_sync_lag_block permissions_cache_active_update
    permissions_cache_max_entries permissions_update_interval
    permissions_validity phi_convict_threshold
    prepared_statements_cache_size range_request_timeout
    range_tombstone_list_growth_factor
    read_before_write_list_operations_enabled
    read_consistency_levels_disallowed read_consistency_levels_warned
    read_request_timeout read_thresholds_enabled
    reject_out_of_token_range_requests reject_repair_compaction_threshold
    repair repair_command_pool_full_strategy repair_command_pool_size
    repair_disk_headroom_reject_ratio repair_request_timeout
    repair_session_max_tree_depth repair_session_space repair_state_expires
    repair_state_size repaired_data_tracking_for_partition_reads_enabled
    repaired_data_tracking_for_range_reads_enabled
    replica_filtering_protection report_unconfirmed_repaired_data_mismatches
    request_timeout role_manager roles_cache_active_update
    roles_cache_max_entries roles_update_interval roles_validity
    row_cache_class_name row_cache_keys_to_save row_cache_save_period
    row_cache_size row_index_read_size_fail_threshold
    row_index_read_size_warn_threshold rpc_address rpc_interface
    rpc_interface_prefer_ipv6 rpc_keepalive
    sai_frozen_term_size_fail_threshold sai_frozen_term_size_warn_threshold
    sai_options sai_sstable_indexes_per_query_fail_threshold
    sai_sstable_indexes_per_query_warn_threshold
    sai_string_term_size_fail_threshold sai_string_term_size_warn_threshold
    sai_vector_term_size_fail_threshold sai_vector_term_size_warn_threshold
    sasi_indexes_enabled saved_caches_directory
    scripted_user_defined_functions_enabled secondary_indexes_enabled
    secondary_indexes_per_table_fail_threshold
    secondary_indexes_per_table_warn_threshold seed_provider
    server_encryption_options severity_during_decommission
    simplestrategy_enabled skip_paxos_repair_on_topology_change
    skip_paxos_repair_on_topology_change_keyspaces
    skip_stream_disk_space_check slow_query_log_timeout
    snapshot_before_compaction snapshot_links_per_second
    snapshot_on_duplicate_row_detection snapshot_on_repaired_data_mismatch
    ssl_storage_port sstable sstable_preemptive_open_interval
    sstable_read_rate_persistence_enabled start_native_transport
    startup_checks storage_compatibility_mode storage_port
    stream_entire_sstables stream_throughput_outbound
    stream_transfer_task_timeout streaming_connections_per_host
    streaming_keep_alive_period streaming_slow_events_log_timeout
    streaming_state_expires streaming_state_size streaming_stats_enabled
    table_properties_disallowed table_properties_ignored
    table_properties_warned tables_fail_threshold tables_warn_threshold
    tombstone_failure_threshold tombstone_warn_threshold
    top_partitions_enabled trace_type_query_ttl trace_type_repair_ttl
    transfer_hints_on_decommission transient_replication_enabled
    transparent_data_encryption_options traverse_auth_from_root
    trickle_fsync trickle_fsync_interval truncate_request_timeout
    uncompressed_tables_enabled
    unlogged_batch_across_partitions_warn_threshold
    use_creation_time_for_hint_ttl use_deterministic_table_id
    use_offheap_merkle_trees use_statements_enabled
    user_defined_functions_enabled user_defined_functions_fail_timeout
    user_defined_functions_threads_enabled
    user_defined_functions_warn_timeout user_function_timeout_policy
    user_timestamps_enabled uuid_sstable_identifiers_enabled
    validation_preview_purge_head_start vector_dimensions_fail_threshold
    vector_dimensions_warn_threshold vector_type_enabled
    windows_timer_interval write_consistency_levels_disallowed
    write_consistency_levels_warned write_request_timeout
    zero_ttl_on_twcs_enabled zero_ttl_on_twcs_warned
    """.split()
)


def settingsFor(tmp_path: Path, **overrides: object) -> NodeSettings:
    """
    Settings for a node home under C{tmp_path}, with some fields replaced.
    """
    values: dict[str, object] = {"home": tmp_path / "node"}
    values.update(overrides)
    return NodeSettings(**values)  # type: ignore[arg-type]


def freePort() -> int:
    """
    A loopback TCP port nothing listens on (at the time of asking).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def topLevelYamlKeys(text: str) -> list[str]:
    """
    The top-level keys of a block-style YAML document.
    """
    return re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", text, re.MULTILINE)


@pytest.fixture
def fakeNode(tmp_path: Path):
    """
    Start a process whose command line looks like our node's; yield a factory.

    The factory takes the home to mention and whether to ignore SIGTERM.
    """
    started: list[subprocess.Popen] = []

    def spawn(home: Path, ignoreTerm: bool = False) -> subprocess.Popen:
        code = "import signal, time\n"
        if ignoreTerm:
            code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        code += "print('ready', flush=True)\ntime.sleep(60)\n"
        process = subprocess.Popen(
            [sys.executable, "-c", code, f"-Dcassandra.config=file://{home}/conf/cassandra.yaml",
             devnode.MAIN_CLASS],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        process.stdout.readline()
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


# --------------------------------------------------------------------------
# Settings


def test_defaultsFromEmptyEnvironment() -> None:
    """An empty environment gives the documented defaults, home at repo/.cassandra."""
    settings = NodeSettings.fromEnvironment({})
    repoRoot = Path(devnode.__file__).resolve().parent.parent
    assert settings.home == repoRoot / ".cassandra"
    assert settings.address == "127.0.0.1"
    assert settings.port == 19042
    assert settings.storage_port == 17000
    assert settings.version == devnode.DEFAULT_VERSION
    assert re.fullmatch(r"5\.0\.\d+", settings.version)
    assert settings.heap == "1g"
    assert settings.start_timeout == 240.0
    assert settings.contactPoint == "127.0.0.1:19042"
    assert settings.count == 1 and not settings.clustered
    assert settings.pidFile == settings.home / "node.pid"
    assert settings.dataDir == settings.home / "data"


def test_environmentOverridesEverySetting(tmp_path: Path) -> None:
    """Each MEETR_NODE_* variable (and JAVA_HOME) lands in its settings field."""
    settings = NodeSettings.fromEnvironment({
        "MEETR_NODE_HOME": str(tmp_path / "h"),
        "MEETR_NODE_ADDRESS": "127.0.0.2",
        "MEETR_NODE_PORT": "29042",
        "MEETR_NODE_STORAGE_PORT": "27000",
        "MEETR_NODE_VERSION": "5.0.8",
        "MEETR_NODE_HEAP": "1G",
        "MEETR_NODE_START_TIMEOUT": "12.5",
        "JAVA_HOME": "/opt/jdk",
        "PATH": "/nowhere",
    })
    assert settings.home == (tmp_path / "h").resolve()
    assert settings.libDir == settings.home / "lib"
    assert settings.pidFile == settings.home / "node.pid"
    assert (settings.address, settings.port, settings.storage_port) == ("127.0.0.2", 29042, 27000)
    assert (settings.version, settings.heap, settings.start_timeout) == ("5.0.8", "1g", 12.5)
    assert (settings.java_home, settings.path) == ("/opt/jdk", "/nowhere")
    assert settings.contactPoint == "127.0.0.2:29042"


def test_emptyVariablesMeanDefaults() -> None:
    """Variables set to the empty string (as make passes unset ones) use the defaults."""
    empty = {name: "" for name in (
        "MEETR_NODE_HOME", "MEETR_NODE_PORT", "MEETR_NODE_STORAGE_PORT",
        "MEETR_NODE_VERSION", "MEETR_NODE_HEAP", "MEETR_NODE_START_TIMEOUT", "JAVA_HOME",
        "MEETR_NODE_COUNT",
    )}
    assert NodeSettings.fromEnvironment(empty) == NodeSettings.fromEnvironment({})


@pytest.mark.parametrize("name, value", [
    ("MEETR_NODE_PORT", "abc"),
    ("MEETR_NODE_PORT", "0"),
    ("MEETR_NODE_STORAGE_PORT", "70000"),
    ("MEETR_NODE_PORT", "17000"),
    ("MEETR_NODE_ADDRESS", "localhost"),
    ("MEETR_NODE_HEAP", "1.5g"),
    ("MEETR_NODE_HEAP", "512"),
    ("MEETR_NODE_VERSION", "4.1.5"),
    ("MEETR_NODE_VERSION", "latest"),
    ("MEETR_NODE_START_TIMEOUT", "-1"),
    ("MEETR_NODE_START_TIMEOUT", "soon"),
    ("MEETR_NODE_HOME", "/tmp/a:b"),
    ("MEETR_NODE_COUNT", "0"),
    ("MEETR_NODE_COUNT", "10"),
    ("MEETR_NODE_COUNT", "three"),
])
def test_invalidSettingsAreRefused(name: str, value: str) -> None:
    """A value that cannot work (bad port, host name, heap, version, clash) is a DevNodeError."""
    with pytest.raises(DevNodeError, match=name.replace("MEETR_NODE_", "")):
        NodeSettings.fromEnvironment({name: value})


def test_settingsAreFrozen(tmp_path: Path) -> None:
    """Settings are an immutable value."""
    settings = settingsFor(tmp_path)
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


# --------------------------------------------------------------------------
# Rendering


def test_yamlHasChosenAddressAndPorts(tmp_path: Path) -> None:
    """cassandra.yaml carries the chosen address, native and storage ports, and seeds."""
    yaml = pytest.importorskip("yaml")
    settings = settingsFor(tmp_path, address="127.0.0.3", port=29043, storage_port=27001)
    config = yaml.safe_load(devnode.renderCassandraYaml(settings))
    assert config["listen_address"] == "127.0.0.3"
    assert config["rpc_address"] == "127.0.0.3"
    assert config["native_transport_port"] == 29043
    assert config["storage_port"] == 27001
    assert config["start_native_transport"] is True
    seeds = config["seed_provider"][0]["parameters"][0]["seeds"]
    assert seeds == "127.0.0.3:27001"


def test_yamlKeepsEverythingUnderHome(tmp_path: Path) -> None:
    """Every directory in cassandra.yaml is under the node home's data folder."""
    yaml = pytest.importorskip("yaml")
    settings = settingsFor(tmp_path)
    config = yaml.safe_load(devnode.renderCassandraYaml(settings))
    directories = config["data_file_directories"] + [
        config[key] for key in ("commitlog_directory", "saved_caches_directory",
                                "hints_directory", "cdc_raw_directory")
    ]
    for directory in directories:
        assert Path(directory).is_relative_to(settings.dataDir)


def test_yamlIsASingleFreshDevNode(tmp_path: Path) -> None:
    """The yaml sets up one fresh 5.0 node: one token, no bootstrap, no auto snapshots."""
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load(devnode.renderCassandraYaml(settingsFor(tmp_path)))
    assert config["num_tokens"] == 1
    assert config["auto_bootstrap"] is False
    assert config["auto_snapshot"] is False
    assert config["storage_compatibility_mode"] == "NONE"
    assert config["endpoint_snitch"] == "SimpleSnitch"


def test_yamlKeysAreCassandra50ConfigFields(tmp_path: Path) -> None:
    """Every top-level yaml key is a Cassandra 5.0 Config field (5.0 rejects unknown keys)."""
    keys = topLevelYamlKeys(devnode.renderCassandraYaml(settingsFor(tmp_path)))
    assert "seed_provider" in keys and "native_transport_port" in keys
    assert len(keys) == len(set(keys))
    assert set(keys) <= CASSANDRA_50_CONFIG_FIELDS


def test_yamlKeysAreFieldsOfTheFetchedJar(tmp_path: Path) -> None:
    """Where the jars were fetched, every yaml key is a field of that jar's Config class."""
    home = NodeSettings.fromEnvironment(os.environ)
    jar = home.libDir / f"cassandra-all-{home.version}.jar"
    javap = shutil.which("javap")
    if not jar.is_file() or javap is None:
        pytest.skip("needs the fetched jars (make cassandra) and javap")
    with zipfile.ZipFile(jar) as archive:
        archive.extract("org/apache/cassandra/config/Config.class", tmp_path)
    listing = subprocess.run(
        [javap, "-cp", str(tmp_path), "org.apache.cassandra.config.Config"],
        capture_output=True, text=True, check=True,
    ).stdout
    fields = set(re.findall(r"^\s+public (?!static)[^(]*? (\w+);$", listing, re.MULTILINE))
    keys = topLevelYamlKeys(devnode.renderCassandraYaml(settingsFor(tmp_path)))
    assert set(keys) <= fields


def test_yamlScalarQuotesStrings() -> None:
    """Strings are double-quoted and escaped; booleans and numbers are bare."""
    assert devnode.yamlScalar(True) == "true"
    assert devnode.yamlScalar(False) == "false"
    assert devnode.yamlScalar(7) == "7"
    assert devnode.yamlScalar('a "b" \\c') == '"a \\"b\\" \\\\c"'
    assert devnode.yamlScalar("NONE") == '"NONE"'


def test_logbackWritesIntoLogDir(tmp_path: Path) -> None:
    """logback.xml is well-formed and logs to logs/system.log at INFO."""
    settings = settingsFor(tmp_path)
    root = ET.fromstring(devnode.renderLogbackXml(settings))
    assert root.find("./appender[@name='FILE']/file").text == str(settings.logDir / "system.log")
    assert root.find("./root").get("level") == "INFO"


def test_pomDependsOnlyOnCassandraAll() -> None:
    """The pom is well-formed, packaging pom, with the one cassandra-all dependency."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.fromstring(devnode.renderPom("5.0.8"))
    assert root.find("m:packaging", ns).text == "pom"
    dependencies = root.findall("m:dependencies/m:dependency", ns)
    assert [(d.find("m:groupId", ns).text, d.find("m:artifactId", ns).text,
             d.find("m:version", ns).text) for d in dependencies] == [
        ("org.apache.cassandra", "cassandra-all", "5.0.8")]


def test_javaCommand(tmp_path: Path) -> None:
    """The JVM command has the heap, JDK 17 module flags, jamm agent, config paths, class path and main class."""
    settings = settingsFor(tmp_path, heap="256m")
    jamm = settings.libDir / "jamm-0.4.0.jar"
    command = devnode.buildJavaCommand(settings, "/jdk/bin/java", jamm)
    assert command[0] == "/jdk/bin/java"
    assert command[-1] == "org.apache.cassandra.service.CassandraDaemon"
    assert {"-Xms256m", "-Xmx256m", f"-javaagent:{jamm}"} <= set(command)
    assert set(devnode.JDK17_MODULE_FLAGS) <= set(command)
    assert set(devnode.FAST_START_PROPERTIES) <= set(command)
    assert f"-Dcassandra.config=file://{settings.confDir}/cassandra.yaml" in command
    assert f"-Dcassandra.storagedir={settings.dataDir}" in command
    assert f"-Dlogback.configurationFile={settings.confDir}/logback.xml" in command
    classpath = command[command.index("-cp") + 1]
    assert classpath == f"{settings.confDir}:{settings.libDir}/*"
    assert not any("jmx.local.port" in arg for arg in command)


def test_moduleFlagsAreWellFormed() -> None:
    """Each JDK 17 flag is --add-exports/--add-opens module/package=ALL-UNNAMED, none twice."""
    flags = devnode.JDK17_MODULE_FLAGS
    assert len(flags) == len(set(flags))
    for flag in flags:
        assert re.fullmatch(r"--add-(exports|opens)=[\w.]+/[\w.]+=ALL-UNNAMED", flag)


def test_javaEnvironmentCapsMallocArenas() -> None:
    """The JVM gets MALLOC_ARENA_MAX=4 unless the caller chose a value."""
    assert devnode.buildJavaEnvironment({"A": "1"}) == {"A": "1", "MALLOC_ARENA_MAX": "4"}
    assert devnode.buildJavaEnvironment({"MALLOC_ARENA_MAX": "2"})["MALLOC_ARENA_MAX"] == "2"


def test_writeConfigWritesBothFiles(tmp_path: Path) -> None:
    """writeConfig leaves conf/cassandra.yaml and conf/logback.xml, and no temp files."""
    settings = settingsFor(tmp_path)
    devnode.writeConfig(settings)
    names = sorted(p.name for p in settings.confDir.iterdir())
    assert names == ["cassandra.yaml", "logback.xml", "triggers"]
    assert (settings.confDir / "cassandra.yaml").read_text() == devnode.renderCassandraYaml(settings)


# --------------------------------------------------------------------------
# Jars


def fakeLib(libDir: Path, version: str, jars: list[str]) -> None:
    """
    Make a lib folder holding non-empty jars and a manifest naming them.
    """
    libDir.mkdir(parents=True)
    for jar in jars:
        (libDir / jar).write_bytes(b"PK")
    (libDir / devnode.MANIFEST_NAME).write_text(devnode.renderManifest(version, jars))


def test_libCompleteOnlyWithManifestAndEveryJar(tmp_path: Path) -> None:
    """lib/ counts as complete only with a manifest of this version naming present jars."""
    lib = tmp_path / "lib"
    assert not devnode.libIsComplete(lib, "5.0.9")
    fakeLib(lib, "5.0.9", ["cassandra-all-5.0.9.jar", "jamm-0.4.0.jar"])
    assert devnode.libIsComplete(lib, "5.0.9")
    assert not devnode.libIsComplete(lib, "5.0.8")
    (lib / "jamm-0.4.0.jar").unlink()
    assert not devnode.libIsComplete(lib, "5.0.9")


def test_libWithoutManifestIsIncomplete(tmp_path: Path) -> None:
    """Jars without a manifest (an interrupted copy) are not a complete lib/."""
    lib = tmp_path / "lib"
    fakeLib(lib, "5.0.9", ["cassandra-all-5.0.9.jar"])
    (lib / devnode.MANIFEST_NAME).unlink()
    assert not devnode.libIsComplete(lib, "5.0.9")


def test_replaceFolderSwapsWholeFolder(tmp_path: Path) -> None:
    """replaceFolder puts the new folder in place and leaves nothing of the old one."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "old.jar").write_text("old")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "new.jar").write_text("new")
    devnode.replaceFolder(tmp_path / "new", tmp_path / "lib")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib"]
    assert [p.name for p in (tmp_path / "lib").iterdir()] == ["new.jar"]


def test_findJammJar(tmp_path: Path) -> None:
    """The jamm agent jar is found in lib/, and its absence is a clear error."""
    with pytest.raises(DevNodeError, match="jamm"):
        devnode.findJammJar(tmp_path)
    (tmp_path / "jamm-0.4.0.jar").write_bytes(b"PK")
    assert devnode.findJammJar(tmp_path) == tmp_path / "jamm-0.4.0.jar"


def test_findJavaPrefersJavaHome(tmp_path: Path) -> None:
    """JAVA_HOME's bin/java is used when set; a JAVA_HOME without one is an error."""
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    assert devnode.findJava(settingsFor(tmp_path, java_home=str(tmp_path / "jdk"))) == str(java)
    with pytest.raises(DevNodeError, match="JAVA_HOME"):
        devnode.findJava(settingsFor(tmp_path, java_home=str(tmp_path)))


# --------------------------------------------------------------------------
# Pid file and process checks


def test_pidFileRoundTrip(tmp_path: Path) -> None:
    """A written pid reads back; removing it twice is fine."""
    pidFile = tmp_path / "node.pid"
    devnode.writePid(pidFile, 4242)
    assert pidFile.read_text() == "4242\n"
    assert devnode.readPid(pidFile) == 4242
    devnode.removePid(pidFile)
    devnode.removePid(pidFile)
    assert devnode.readPid(pidFile) is None


@pytest.mark.parametrize("content", ["", "abc", "-5", "0", "1", "12 34", "\xff"])
def test_badPidFilesReadAsNone(tmp_path: Path, content: str) -> None:
    """Garbage, negative, 0 or 1 (init) in a pid file mean no pid."""
    pidFile = tmp_path / "node.pid"
    pidFile.write_text(content, encoding="latin-1")
    assert devnode.readPid(pidFile) is None


def test_cmdlineOfOurNode() -> None:
    """Only a CassandraDaemon command line naming our home counts as our node."""
    home = Path("/x/.cassandra")
    ours = ["java", "-Dcassandra.config=file:///x/.cassandra/conf/cassandra.yaml", devnode.MAIN_CLASS]
    assert devnode.cmdlineIsOurNode(ours, home)
    assert not devnode.cmdlineIsOurNode(ours[:-1], home)
    assert not devnode.cmdlineIsOurNode(ours, Path("/x/.cass"))
    assert not devnode.cmdlineIsOurNode(
        ["java", "-Dcassandra.config=file:///x/.cassandra2/conf/c.yaml", devnode.MAIN_CLASS], home)
    assert not devnode.cmdlineIsOurNode(None, home)
    assert not devnode.cmdlineIsOurNode([], home)


def test_isOurNodeReadsProc(tmp_path: Path, fakeNode) -> None:
    """isOurNode is true for a live look-alike of our node, false for others and dead pids."""
    home = tmp_path / "node"
    process = fakeNode(home)
    assert devnode.isOurNode(process.pid, home)
    assert not devnode.isOurNode(process.pid, tmp_path / "other")
    assert not devnode.isOurNode(os.getpid(), home)
    process.kill()
    process.wait()
    assert not devnode.isOurNode(process.pid, home)


def test_stopTerminatesOurNodeAndRemovesPidFile(tmp_path: Path, fakeNode) -> None:
    """stop SIGTERMs the pid-file process when it is our node, and removes the pid file."""
    settings = settingsFor(tmp_path, port=freePort())
    process = fakeNode(settings.home)
    devnode.writePid(settings.pidFile, process.pid)
    assert devnode.stop(settings) == 0
    assert process.wait(timeout=10) == -signal.SIGTERM
    assert not settings.pidFile.exists()


def test_stopKillsANodeThatIgnoresSigterm(tmp_path: Path, fakeNode) -> None:
    """A node still alive after the grace period gets SIGKILL."""
    settings = settingsFor(tmp_path, port=freePort(), stop_grace=0.5)
    process = fakeNode(settings.home, ignoreTerm=True)
    devnode.writePid(settings.pidFile, process.pid)
    began = time.monotonic()
    assert devnode.stop(settings) == 0
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert time.monotonic() - began >= 0.5


def test_stopLeavesOtherProcessesAlone(tmp_path: Path, fakeNode) -> None:
    """A pid file naming a process of another home is forgotten, the process untouched."""
    settings = settingsFor(tmp_path, port=freePort())
    process = fakeNode(tmp_path / "elsewhere")
    devnode.writePid(settings.pidFile, process.pid)
    assert devnode.stop(settings) == 0
    assert process.poll() is None
    assert not settings.pidFile.exists()


def test_stopWithNothingRunning(tmp_path: Path) -> None:
    """stop exits 0 when no node runs, and creates no node home."""
    settings = settingsFor(tmp_path, port=freePort())
    assert devnode.stop(settings) == 0
    assert not settings.home.exists()


def test_statusWithNothingAnswering(tmp_path: Path, capsys) -> None:
    """status exits 3 and says 'not running' when nothing answers on the port."""
    settings = settingsFor(tmp_path, port=freePort())
    assert devnode.status(settings) == devnode.EXIT_NOT_RUNNING == 3
    assert "not running" in capsys.readouterr().out


def test_checkPortsFreeNamesTheBusyPort(tmp_path: Path) -> None:
    """A port already listened on is reported with the variable that sets it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        settings = settingsFor(tmp_path, port=freePort(), storage_port=busy)
        with pytest.raises(DevNodeError, match="MEETR_NODE_STORAGE_PORT"):
            devnode.checkPortsFree(settings)


def test_tailTextShowsNewLinesCut(tmp_path: Path) -> None:
    """tailText shows only lines written after the offset, each cut to a width."""
    log = tmp_path / "system.log"
    log.write_text("old line\n")
    offset = devnode.fileSize(log)
    with log.open("a") as f:
        f.write("new line\n" + "x" * 1000 + "\n")
    tail = devnode.tailText(log, offset=offset, width=50)
    assert tail.splitlines()[0] == "new line"
    assert len(tail.splitlines()[1]) == 50
    assert devnode.tailText(tmp_path / "missing.log") == ""


def test_mainRejectsUnknownCommand(capsys) -> None:
    """An unknown or missing command prints usage and exits 2."""
    assert devnode.main(["restart"], {}) == 2
    assert devnode.main([], {}) == 2
    assert "usage" in capsys.readouterr().err


def test_mainReportsBadSettings(capsys) -> None:
    """A bad setting makes main exit 1 with the reason on stderr."""
    assert devnode.main(["status"], {"MEETR_NODE_PORT": "x"}) == 1
    assert "MEETR_NODE_PORT" in capsys.readouterr().err


# --------------------------------------------------------------------------
# Clusters


def clusterFor(tmp_path: Path, count: int = 3, **overrides: object) -> NodeSettings:
    """
    The settings of node 1 of a cluster of C{count} nodes under C{tmp_path}.
    """
    return settingsFor(tmp_path, count=count, **overrides).checked()


def test_countFromEnvironment(tmp_path: Path) -> None:
    """MEETR_NODE_COUNT sets the number of nodes; the settings are node 1's."""
    settings = NodeSettings.fromEnvironment(
        {"MEETR_NODE_HOME": str(tmp_path), "MEETR_NODE_COUNT": "3"})
    assert (settings.count, settings.index, settings.address) == (3, 1, "127.0.0.1")
    assert settings.clustered
    assert settings.contactPoints == "127.0.0.1:19042,127.0.0.2:19042,127.0.0.3:19042"


def test_nodesTakeConsecutiveAddressesAndOwnFolders(tmp_path: Path) -> None:
    """Node i listens on the i-th address from the first on and lives in node<i>/; the jars are shared."""
    settings = clusterFor(tmp_path, address="127.0.0.2", port=29042)
    nodes = devnode.allNodes(settings)
    assert [node.address for node in nodes] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert [node.index for node in nodes] == [1, 2, 3]
    assert [node.name for node in nodes] == ["node1", "node2", "node3"]
    third = nodes[2]
    assert third.nodeHome == settings.home / "node3"
    assert third.confDir == settings.home / "node3" / "conf"
    assert third.dataDir == settings.home / "node3" / "data"
    assert third.logDir == settings.home / "node3" / "logs"
    assert third.pidFile == settings.home / "node3" / "node.pid"
    assert third.libDir == settings.libDir == settings.home / "lib"
    assert third.seedAddress == "127.0.0.2"
    assert third.contactPoint == "127.0.0.4:29042"
    assert third.storageEndpoint == "127.0.0.4:17000"
    assert third.contactPoints == settings.contactPoints == (
        "127.0.0.2:29042,127.0.0.3:29042,127.0.0.4:29042")
    assert third.forNode(1) == settings


def test_singleNodeLayoutUnchanged(tmp_path: Path) -> None:
    """With one node, everything stays directly in the home, as before clusters."""
    settings = settingsFor(tmp_path)
    assert settings.nodeHome == settings.home
    assert settings.name == "the node"
    assert settings.contactPoints == settings.contactPoint == "127.0.0.1:19042"
    assert settings.withCount(3).withCount(1) == settings


def test_noSuchNode(tmp_path: Path) -> None:
    """A node number outside the cluster is a DevNodeError."""
    settings = clusterFor(tmp_path)
    for index in (0, 4):
        with pytest.raises(DevNodeError, match=f"no node {index} in a cluster of 3"):
            settings.forNode(index)


def test_addressesMustNotRunOut(tmp_path: Path) -> None:
    """A cluster needs count addresses from MEETR_NODE_ADDRESS on."""
    with pytest.raises(DevNodeError, match="MEETR_NODE_ADDRESS"):
        NodeSettings.fromEnvironment({
            "MEETR_NODE_HOME": str(tmp_path), "MEETR_NODE_ADDRESS": "255.255.255.254",
            "MEETR_NODE_COUNT": "3"})


def test_initialTokensSpreadEvenly() -> None:
    """Each node's token is the middle of its equal slice of the Murmur3 ring; one node's is 0."""
    assert devnode.initialToken(1, 1) == "0"
    tokens = [int(devnode.initialToken(index, 3)) for index in (1, 2, 3)]
    assert tokens == sorted(tokens) and len(set(tokens)) == 3
    assert all(-(2**63) < token < 2**63 for token in tokens)
    assert tokens[1] - tokens[0] == tokens[2] - tokens[1] == 2**64 // 3


def test_clusterYamlPerNode(tmp_path: Path) -> None:
    """Each node's yaml has its own address and token, node 1 as seed, GossipingPropertyFileSnitch."""
    yaml = pytest.importorskip("yaml")
    settings = clusterFor(tmp_path, port=29042, storage_port=27000)
    configs = [yaml.safe_load(devnode.renderCassandraYaml(node))
               for node in devnode.allNodes(settings)]
    for index, config in enumerate(configs, 1):
        address = f"127.0.0.{index}"
        assert config["listen_address"] == config["rpc_address"] == address
        assert config["native_transport_port"] == 29042
        assert config["storage_port"] == 27000
        assert config["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:27000"
        assert config["endpoint_snitch"] == "GossipingPropertyFileSnitch"
        assert config["initial_token"] == devnode.initialToken(index, 3)
        assert config["num_tokens"] == 1
        assert config["auto_bootstrap"] is False
        assert config["hinted_handoff_enabled"] is True
        assert config["cluster_name"] == devnode.CLUSTER_NAME


def test_clusterYamlKeepsEachNodeUnderItsFolder(tmp_path: Path) -> None:
    """Every directory in a node's yaml is under that node's own data folder."""
    yaml = pytest.importorskip("yaml")
    node = clusterFor(tmp_path).forNode(2)
    config = yaml.safe_load(devnode.renderCassandraYaml(node))
    directories = config["data_file_directories"] + [
        config[key] for key in ("commitlog_directory", "saved_caches_directory",
                                "hints_directory", "cdc_raw_directory")
    ]
    for directory in directories:
        assert Path(directory).is_relative_to(node.home / "node2" / "data")


def test_clusterYamlKeysAreCassandra50ConfigFields(tmp_path: Path) -> None:
    """A cluster node's yaml keys are Cassandra 5.0 Config fields too."""
    keys = topLevelYamlKeys(devnode.renderCassandraYaml(clusterFor(tmp_path).forNode(3)))
    assert len(keys) == len(set(keys))
    assert set(keys) <= CASSANDRA_50_CONFIG_FIELDS


def test_rackdcProperties() -> None:
    """cassandra-rackdc.properties puts the node in data centre dc1, rack rack1."""
    lines = devnode.renderRackdcProperties().splitlines()
    entries = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert entries == {"dc": "dc1", "rack": "rack1"}


def test_writeConfigOfAClusterNode(tmp_path: Path) -> None:
    """A node of a cluster gets cassandra-rackdc.properties beside its yaml, in its own conf/."""
    node = clusterFor(tmp_path).forNode(2)
    devnode.writeConfig(node)
    names = sorted(p.name for p in (tmp_path / "node" / "node2" / "conf").iterdir())
    assert names == ["cassandra-rackdc.properties", "cassandra.yaml", "logback.xml", "triggers"]


def test_clusterJavaCommand(tmp_path: Path) -> None:
    """A node's JVM reads its own conf/ (the snitch finds its properties on the class path) and keeps the system tables durable."""
    node = clusterFor(tmp_path).forNode(2)
    command = devnode.buildJavaCommand(node, "java", node.libDir / "jamm-0.4.0.jar")
    classpath = command[command.index("-cp") + 1]
    assert classpath == f"{node.home}/node2/conf:{node.home}/lib/*"
    assert f"-Dcassandra.storagedir={node.home}/node2/data" in command
    assert devnode.UNSAFE_SYSTEM_PROPERTY not in command
    assert set(devnode.CLUSTER_START_PROPERTIES) <= set(command)
    assert devnode.cmdlineIsOurNode(command, node.nodeHome)
    assert not devnode.cmdlineIsOurNode(command, node.forNode(1).nodeHome)


def test_singleNodeStartProperties(tmp_path: Path) -> None:
    """A single node keeps every fast-start property and none of the cluster's."""
    assert devnode.startProperties(settingsFor(tmp_path)) == devnode.FAST_START_PROPERTIES
    assert devnode.UNSAFE_SYSTEM_PROPERTY in devnode.FAST_START_PROPERTIES


def test_clusterSizeFromFolders(tmp_path: Path) -> None:
    """The cluster's size is the highest node<n>/ folder in the home; 1 when none."""
    assert devnode.clusterSize(tmp_path / "missing") == 1
    for name in ("node1", "node3", "nodes", "node10", "lib"):
        (tmp_path / name).mkdir()
    (tmp_path / "node7").write_text("a file, not a node")
    assert devnode.clusterSize(tmp_path) == 3


def test_homeNodesAreTheSingleNodeThenTheCluster(tmp_path: Path) -> None:
    """stop looks at the home's single node and at each node of the cluster found there."""
    settings = settingsFor(tmp_path)
    assert devnode.homeNodes(settings) == [settings]
    (settings.home / "node2").mkdir(parents=True)
    nodes = devnode.homeNodes(settings)
    assert [(node.count, node.index, node.nodeHome) for node in nodes] == [
        (1, 1, settings.home), (2, 1, settings.home / "node1"), (2, 2, settings.home / "node2")]


def gossip(generation: int = 7, status: str = "NORMAL,0", rpcReady: bool = True,
           schema: str = "s1") -> devnode.GossipEntry:
    """
    A gossip entry, NORMAL and ready unless told otherwise.
    """
    return devnode.GossipEntry(generation, status, rpcReady, schema)


def test_gossipViewFromRows() -> None:
    """gossip_info rows become entries by address:port; missing values are empty."""
    view = devnode.gossipView([
        ("127.0.0.1", 17000, 11, "NORMAL,0", "true", "s1"),
        ("127.0.0.2", 17000, None, None, None, None),
    ])
    assert view == {
        "127.0.0.1:17000": gossip(11, "NORMAL,0", True, "s1"),
        "127.0.0.2:17000": gossip(0, "", False, ""),
    }
    assert '"schema"' in devnode.GOSSIP_QUERY


def test_gossipEntryIsNormal() -> None:
    """An entry is NORMAL only with a NORMAL status and CQL ready."""
    assert gossip().isNormal
    assert not gossip(status="BOOT,0").isNormal
    assert not gossip(status="").isNormal
    assert not gossip(rpcReady=False).isNormal


A, B, C = "127.0.0.1:17000", "127.0.0.2:17000", "127.0.0.3:17000"


def test_gossipSettled() -> None:
    """Three nodes that each see all three NORMAL, in their current generation and schema, have no problems."""
    view = {A: gossip(1), B: gossip(2), C: gossip(3)}
    assert devnode.gossipProblems({A: view, B: view, C: view}, [A, B, C]) == []


def test_gossipProblemsOfAStartingCluster() -> None:
    """A node that does not answer, one unknown to another, one still joining: each is named."""
    views = {
        A: {A: gossip(1), B: gossip(2, status="BOOT,0")},
        B: {A: gossip(1), B: gossip(2, status="BOOT,0")},
    }
    assert devnode.gossipProblems(views, [A, B, C]) == [
        f"{A} sees {B} BOOT,0",
        f"{B} sees {B} BOOT,0",
        f"{C} does not answer CQL",
    ]
    views[A].pop(B)
    assert f"{A} does not know {B}" in devnode.gossipProblems(views, [B])


def test_gossipProblemsOfARestartedNode() -> None:
    """A restarted node still NORMAL in an old generation, or of another schema, is not settled yet."""
    old = {A: gossip(1), B: gossip(2), C: gossip(3)}
    restarted = {A: gossip(1), B: gossip(2), C: gossip(9, schema="s0")}
    views = {A: old, B: old, C: restarted}
    assert devnode.gossipProblems(views, [C]) == [
        f"{A} has not seen {C} start",
        f"{B} has not seen {C} start",
    ]
    views = {A: restarted, B: restarted, C: restarted}
    assert devnode.gossipProblems(views, [C]) == [
        f"{A} sees {C} with another schema",
        f"{B} sees {C} with another schema",
    ]
    settled = {A: gossip(1), B: gossip(2), C: gossip(9)}
    assert devnode.gossipProblems({A: settled, C: settled}, [C]) == []


def test_waitUntilSettledGivesUpNamingTheProblem(tmp_path: Path, monkeypatch) -> None:
    """Past the deadline, the wait fails naming what is missing and the start timeout."""
    monkeypatch.setattr(devnode, "probeNode", lambda node, timeout=3.0: None)
    settings = clusterFor(tmp_path, start_timeout=5.0)
    with pytest.raises(DevNodeError, match="127.0.0.1:17000 does not answer CQL") as e:
        devnode.waitUntilSettled(settings, [settings], {}, time.monotonic())
    assert "MEETR_NODE_START_TIMEOUT" in str(e.value)


def test_waitUntilSettledNoticesADeadJvm(tmp_path: Path, monkeypatch) -> None:
    """A launched JVM that exits fails the wait at once, naming the node."""
    monkeypatch.setattr(devnode, "probeNode", lambda node, timeout=3.0: None)
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    settings = clusterFor(tmp_path)
    with pytest.raises(DevNodeError, match="node2's JVM exited with status 3"):
        devnode.waitUntilSettled(settings, [settings], {2: process}, time.monotonic() + 60)


def test_checkConfigUnchanged(tmp_path: Path) -> None:
    """A node restarts only with the settings its yaml was written with (or with no yaml yet)."""
    node = clusterFor(tmp_path).forNode(3)
    devnode.checkConfigUnchanged(node)
    devnode.writeConfig(node)
    devnode.checkConfigUnchanged(node)
    moved = clusterFor(tmp_path, storage_port=27001).forNode(3)
    with pytest.raises(DevNodeError, match="other settings"):
        devnode.checkConfigUnchanged(moved)


def test_checkConfigUnchangedIgnoresComments(tmp_path: Path) -> None:
    """
    A node whose yaml was written when the tool lived elsewhere (another
    name in its header comment) restarts with the same settings; a changed
    setting under that header is still refused.
    """
    node = clusterFor(tmp_path).forNode(3)
    devnode.writeConfig(node)
    path = node.confDir / "cassandra.yaml"
    header, text = path.read_text().split("\n", 1)
    assert header.startswith("# Written by tools.devnode")
    older = "# Written by the node tool at its former place.\n" + text
    path.write_text(older)
    devnode.checkConfigUnchanged(node)
    moved = older.replace("storage_port: 17000", "storage_port: 27001")
    assert "storage_port: 27001" in moved
    path.write_text(moved)
    with pytest.raises(DevNodeError, match="other settings"):
        devnode.checkConfigUnchanged(node)


def test_stopStopsEveryNodeOfTheHome(tmp_path: Path, fakeNode) -> None:
    """stop SIGTERMs each node of a cluster in the home, and forgets their pids."""
    settings = settingsFor(tmp_path, port=freePort())
    nodes = devnode.allNodes(settings.withCount(2))
    processes = []
    for node in nodes:
        processes.append(fakeNode(node.nodeHome))
        devnode.writePid(node.pidFile, processes[-1].pid)
    assert devnode.stop(settings) == 0
    assert [process.wait(timeout=10) for process in processes] == [-signal.SIGTERM] * 2
    assert not any(node.pidFile.exists() for node in nodes)


def test_killNodeKillsOnlyThatNode(tmp_path: Path, fakeNode) -> None:
    """kill-node SIGKILLs its node, even one ignoring SIGTERM, and leaves the others."""
    settings = clusterFor(tmp_path, port=freePort())
    nodes = devnode.allNodes(settings)
    processes = [fakeNode(node.nodeHome, ignoreTerm=True) for node in nodes]
    for node, process in zip(nodes, processes):
        devnode.writePid(node.pidFile, process.pid)
    assert devnode.stopNode(nodes[2], kill=True) == 0
    assert processes[2].wait(timeout=10) == -signal.SIGKILL
    assert not nodes[2].pidFile.exists()
    assert processes[0].poll() is None and processes[1].poll() is None
    assert devnode.stopNode(nodes[2]) == 0


def test_stopNodeTerminates(tmp_path: Path, fakeNode) -> None:
    """stop-node SIGTERMs its node and forgets its pid."""
    node = clusterFor(tmp_path, port=freePort()).forNode(2)
    process = fakeNode(node.nodeHome)
    devnode.writePid(node.pidFile, process.pid)
    assert devnode.stopNode(node) == 0
    assert process.wait(timeout=10) == -signal.SIGTERM
    assert not node.pidFile.exists()


def test_clusterStatusWithNothingAnswering(tmp_path: Path, capsys) -> None:
    """status of a cluster says each node is not running, and exits 3."""
    settings = clusterFor(tmp_path, address="127.0.0.5", port=freePort())
    assert devnode.status(settings) == devnode.EXIT_NOT_RUNNING
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 2)[:2] for line in out[:3]] == [
        ["node1", "not"], ["node2", "not"], ["node3", "not"]]
    assert out[3].startswith("cluster not settled: 127.0.0.5:17000 does not answer CQL")


@pytest.mark.parametrize("argv, parsed", [
    (["start"], ("start", None)),
    (["stop"], ("stop", None)),
    (["status"], ("status", None)),
    (["start-node", "2"], ("start-node", 2)),
    (["stop-node", "1"], ("stop-node", 1)),
    (["kill-node", "9"], ("kill-node", 9)),
    (["kill-node"], None),
    (["kill-node", "0"], None),
    (["kill-node", "10"], None),
    (["kill-node", "x"], None),
    (["start", "2"], None),
    (["start-node", "2", "3"], None),
])
def test_parseArguments(argv: list[str], parsed: object) -> None:
    """The three commands take nothing; the node commands take a node number from 1 to 9."""
    assert devnode.parseArguments(argv) == parsed


def test_mainNodeCommandNeedsACluster(tmp_path: Path, capsys) -> None:
    """A node command on a home with no cluster, or for a node past its size, exits 1 saying why."""
    environ = {"MEETR_NODE_HOME": str(tmp_path), "MEETR_NODE_PORT": str(freePort())}
    assert devnode.main(["kill-node", "2"], environ) == 1
    assert "needs a cluster" in capsys.readouterr().err
    assert devnode.main(["kill-node", "4"], {**environ, "MEETR_NODE_COUNT": "3"}) == 1
    assert "no node 4 in a cluster of 3" in capsys.readouterr().err
    (tmp_path / "node2").mkdir()
    assert devnode.main(["stop-node", "2"], environ) == 0
    assert "node2 is not running" in capsys.readouterr().err
