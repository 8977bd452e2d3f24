"""Reports over finished runs: a run's analysis (`analyze`), a recipe over several seeds (`study`) and the reference
studies shipped with Headwatch. May import every layer below it, training included."""
