"""One booru_posts event per run, naming the sites whose gate passed; none when no gate passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.airflow.conftest import ROOT

# Gates that pass or fail at once (as a blocked quality gate does), then the pipeline's announce_posts. A DAG file of
# its own: dag.test() runs a DAG of the configured DAG folder.
GATES_DAG = '''
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from pony_airflow.defaults import START_DATE
from pony_airflow.failures import pony_task
from pony_airflow.posts_gates import announce_posts

for dag_id, outcomes in {"announce_some": {"danbooru": True, "e621": False, "gelbooru": True},
                         "announce_none": {"danbooru": False, "e621": False}}.items():
    with DAG(dag_id=dag_id, schedule=None, start_date=START_DATE) as dag:
        gates = {}
        for site, passes in outcomes.items():

            @pony_task(task_id=f"check_{site}", retries=0)
            def gate(site: str = site, passes: bool = passes) -> str:
                if not passes:
                    raise AirflowFailException(f"{site}: the scraped_posts gate failed")
                return f"{site}: passed"

            gates[site] = gate()
        announce_posts(gates)
    globals()[dag_id] = dag
'''

RUN = '''
import json
from airflow.dag_processing.dagbag import DagBag
from airflow.models.asset import AssetEvent
from airflow.utils.session import create_session

bag = DagBag()
assert not bag.import_errors, bag.import_errors
out = {}
for dag_id in ("announce_some", "announce_none"):
    run = bag.dags[dag_id].test()
    with create_session() as session:
        events = [e.extra for e in session.query(AssetEvent).filter(AssetEvent.source_dag_id == dag_id)]
    out[dag_id] = {"states": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}, "events": events}
print(json.dumps(out))
'''


def test_one_event_names_the_sites_that_passed_and_a_failed_site_holds_back_no_other(tmp_path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "gates.py").write_text(GATES_DAG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__DAGS_FOLDER=str(dags),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'airflow.db'}",
               PYTHONPATH=str(ROOT / "plugins"))  # fmt: skip
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=env)
    done = subprocess.run([sys.executable, "-c", RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])

    some = runs["announce_some"]
    assert some["states"]["check_e621"] == "failed" and some["states"]["announce_posts"] == "success", some
    assert some["events"] == [{"sites": ["danbooru", "gelbooru"]}], some
    none = runs["announce_none"]
    assert none["states"]["announce_posts"] == "skipped" and none["events"] == [], none
