"""The comparison for issue 10: a FastAPI + sqlite3 emitter as the
orchestrators we serve write one today. Each GET /metrics runs the
whole-table queries on the orchestrator's SQLite file (opened read-only)
and reads one /proc/<pid>/stat per running agent.

Run by `EMITTER_FIELD=fastapi cargo bench -p emitter --bench field`, which
installs FastAPI and uvicorn into target/fastapi-venv and starts:
    FIELD_DB=<db> python -m uvicorn fastapi_emitter:app --app-dir emitter/benches --port <p>
"""

import os
import sqlite3
import time

from fastapi import FastAPI

app = FastAPI()
DB = os.environ["FIELD_DB"]
TERMINAL_STAGES = ("done", "cancelled")


def connect():
    conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 250")
    return conn


CONN = connect()


def proc_stat(pid):
    """utime + stime, state and start ticks of one pid; None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            line = f.read()
    except OSError:
        return None
    rest = line[line.rfind(") ") + 2 :].split()
    return {
        "state": rest[0],
        "cpu_ticks": int(rest[11]) + int(rest[12]),
        "start_ticks": int(rest[19]),
    }


@app.get("/metrics")
def metrics():
    c = CONN
    agents = []
    for job_id, agent, repo, pid, started_at, model, effort, run_id in c.execute(
        """SELECT j.id, j.agent, j.repo, j.pid, j.started_at, j.model, j.effort,
                  (SELECT MAX(r.id) FROM agent_runs AS r WHERE r.job_id = j.id)
           FROM jobs AS j WHERE j.status = 'running' ORDER BY j.id"""
    ):
        entry = {
            "job_id": job_id,
            "agent": agent,
            "repo": repo,
            "pid": pid,
            "started_at": started_at,
            "model": model,
            "effort": effort,
            "run_id": run_id,
        }
        if pid:
            entry.update(proc_stat(pid) or {"alive": False})
        agents.append(entry)
    placeholders = ", ".join("?" * len(TERMINAL_STAGES))
    stages = [
        {"task_id": i, "work_item": w, "stage": s, "entered": e, "repo": r}
        for i, w, s, e, r in c.execute(
            f"SELECT id, work_item_id, stage, stage_entered_at, repo FROM tasks "
            f"WHERE stage NOT IN ({placeholders})",
            TERMINAL_STAGES,
        )
    ]
    queue = dict(c.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    runs, cost, tin, tout, cread, ccreate = c.execute(
        """SELECT COUNT(*), TOTAL(cost_usd), TOTAL(input_tokens), TOTAL(output_tokens),
                  TOTAL(cache_read_tokens), TOTAL(cache_creation_tokens) FROM agent_runs"""
    ).fetchone()
    errors = [
        {"subsystem": s, "total": n, "last_at": at}
        for s, n, at in c.execute(
            "SELECT subsystem, COUNT(*), MAX(created_at) FROM error_events GROUP BY subsystem"
        )
    ]
    ticks = c.execute("SELECT COUNT(*) FROM reconciler_ticks").fetchone()[0]
    return {
        "generated_at": time.time(),
        "stages": stages,
        "queue": queue,
        "agents": agents,
        "cost": {
            "aggregate": {
                "runs": runs,
                "cost_usd": cost,
                "input_tokens": tin,
                "output_tokens": tout,
                "cache_read_tokens": cread,
                "cache_creation_tokens": ccreate,
            }
        },
        "reconciler": {"ticks": ticks},
        "errors": errors,
    }
