"""The worker class the project's rqworker runs, with pooldoctor's census (one line)."""

from rq import SimpleWorker

import pooldoctor.rq

CensusWorker = pooldoctor.rq.install(SimpleWorker)
